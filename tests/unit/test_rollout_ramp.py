"""The ramp's state machine (``deploy.ramp``) and its configuration: which step each look takes, on the stage's
operational signals and the paired comparison; the stage list checked when deploy.yaml loads."""

from __future__ import annotations

import datetime as dt

import pytest

from include.mlops.deploy import ramp
from include.mlops.deploy.config import DeployConfig
from include.mlops.deploy.ramp import Signals, step

T0 = dt.datetime(2013, 3, 1, 12, tzinfo=dt.UTC)
STAGES = [
    {"share": 0.0, "min_hours": 0, "min_requests": 100},
    {"share": 0.25, "min_hours": 1, "min_requests": 100},
    {"share": 1.0, "min_hours": 1, "min_requests": 100},
]
LIMITS = {"latency_p99_ms": 500, "error_rate": 0.01, "memory_mb": 4096, "score_agreement": 0.99, "min_rescored": 50}
GOOD = Signals(requests=500, p99_ms=3.0, error_rate=0.0, memory_mb=300, agreement=1.0, rescored=400)
NO_VERDICT = {"labelled": 10, "enough": False}
ENOUGH = {"labelled": 2000, "enough": False}


def rollout(stage: int = 0, hours_in: float = 2.0, started_hours: float = 3.0) -> dict:
    r = {"version": "2", "champion": "1", "started_at": (T0 - dt.timedelta(hours=started_hours)).isoformat()}
    r |= {"stages": STAGES, "history": []}
    for i in range(stage + 1):
        r = ramp.entered(r, i, (T0 - dt.timedelta(hours=hours_in)).isoformat(), None)
    return r


def verdict(v: str) -> dict:
    return {"decision": v}


def look(r, signals=GOOD, quality=None, evidence=NO_VERDICT, wait_hours=72.0):
    return step(r, LIMITS, signals, quality, evidence, T0, wait_hours)


def test_a_better_challenger_climbs_every_stage_and_is_promoted_at_the_last():
    r = rollout(0)
    seen = []
    for _ in range(len(STAGES) + 1):
        s = look(r, quality=verdict("promote"), evidence=ENOUGH)
        seen.append(s.action)
        if s.action != "advance":
            break
        r = ramp.left(r, T0.isoformat(), "advance", s.why, GOOD)
        r = ramp.entered(r, r["stage"] + 1, (T0 - dt.timedelta(hours=2)).isoformat(), None)
    assert seen == ["advance", "advance", "promote"]
    assert [h["share"] for h in r["history"]] == [0.0, 0.25, 1.0] and r["canary_share"] == 1.0
    assert [h.get("outcome") for h in r["history"]] == ["advance", "advance", None]


def test_a_promote_verdict_before_the_last_stage_only_advances():
    assert look(rollout(0), quality=verdict("promote"), evidence=ENOUGH).action == "advance"
    assert look(rollout(1), quality=verdict("promote"), evidence=ENOUGH).action == "advance"


@pytest.mark.parametrize("quality", [None, {"decision": "inconclusive"}])
def test_every_flight_goes_to_the_challenger_only_on_a_promote_verdict(quality):
    """The stage before the last passed on its signals; without a promote verdict the ramp holds there (an
    inconclusive challenger never serves every flight while it waits)."""
    s = look(rollout(1), quality=quality, evidence=ENOUGH)
    assert s.action == "hold" and "waits for the paired comparison to say promote" in s.why
    assert look(rollout(0), quality=quality).action == "advance"  # the earlier stages advance on signals alone


def test_no_stage_is_raised_while_the_comparison_leans_towards_harm():
    """Inconclusive, but its mean difference already beyond the tolerance: the share stays where it is (at the
    last stage there is nothing to raise: it waits for the verdict, or the cap, or the time)."""
    leaning = {"decision": "inconclusive", "logloss": {"diff": 0.01, "tolerance": 0.005, "ci95": [-0.002, 0.022]}}
    s = look(rollout(0), quality=leaning, evidence=ENOUGH)
    assert s.action == "hold" and "leans towards harm (log-loss difference +0.0100" in s.why, s
    fair = leaning | {"logloss": leaning["logloss"] | {"diff": 0.004}}
    assert look(rollout(0), quality=fair, evidence=ENOUGH).action == "advance"  # within the tolerance
    assert look(rollout(2), quality=leaning, evidence=ENOUGH).action == "hold"


def test_past_the_first_share_a_stage_waits_for_the_comparison():
    """The shadow hands over to the first share on its signals alone; raising the share further needs the paired
    comparison ready (enough labelled flights and days)."""
    four = [{"share": x, "min_hours": 0, "min_requests": 100} for x in (0.0, 0.05, 0.25, 1.0)]
    first_share = ramp.entered(rollout(0) | {"stages": four, "history": []}, 1, T0.isoformat(), None)
    first_share["history"][-1]["entered_at"] = (T0 - dt.timedelta(hours=2)).isoformat()
    assert look(rollout(0), quality=None).action == "advance"
    s = look(first_share, quality=None)
    assert s.action == "hold" and "a larger share waits for the paired comparison" in s.why, s
    assert look(first_share, quality={"decision": "inconclusive"}).action == "advance"


def test_the_last_stage_without_a_verdict_holds():
    s = look(rollout(2), quality=verdict("inconclusive"), evidence=ENOUGH)
    assert s.action == "hold" and "verdict" in s.why


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_harm_on_the_paired_comparison_rolls_back_at_once_at_any_stage(stage):
    # even a stage that has not met its minimums, with no signals at all
    s = look(rollout(stage, hours_in=0.0), signals=Signals(error="unreachable"), quality=verdict("rollback"))
    assert s.action == "rollback" and "harm" in s.why


@pytest.mark.parametrize(
    "signals, why",
    [
        (Signals(error="URLError: refused"), "could not be read"),
        (Signals(requests=None), "no request count"),
        (Signals(requests=99, p99_ms=1, error_rate=0, memory_mb=1, agreement=1, rescored=400), "99 of 100 requests"),
        (Signals(requests=500, p99_ms=None, error_rate=0, memory_mb=1, agreement=1, rescored=400), "no latency"),
        (Signals(requests=500, p99_ms=1, error_rate=None, memory_mb=1, agreement=1, rescored=400), "no error rate"),
        (Signals(requests=500, p99_ms=1, error_rate=0, memory_mb=None, agreement=1, rescored=400), "no memory"),
        (Signals(requests=500, p99_ms=1, error_rate=0, memory_mb=1, agreement=1.0, rescored=49), "49 of 50 flights"),
        (Signals(requests=500, p99_ms=1, error_rate=0, memory_mb=1, agreement=None, rescored=0), "0 of 50 flights"),
    ],
)
def test_a_stage_without_enough_signals_holds(signals, why):
    s = look(rollout(1), signals=signals, quality=verdict("promote"), evidence=ENOUGH)
    assert s.action == "hold" and why in s.why, s


def test_a_stage_younger_than_its_minimum_duration_holds():
    s = look(rollout(1, hours_in=0.5))
    assert s.action == "hold" and "0.50 of 1 hours" in s.why


@pytest.mark.parametrize(
    "change, why",
    [
        ({"p99_ms": 501.0}, "p99 501.0 ms"),
        ({"error_rate": 0.02}, "error rate 2.00%"),
        ({"memory_mb": 5000.0}, "memory 5000 MB"),
        ({"agreement": 0.98}, "served = rescored on 98.00%"),
    ],
)
def test_a_challenger_over_a_limit_is_rolled_back(change, why):
    s = look(rollout(1), signals=Signals(**(GOOD.as_dict() | change)), quality=verdict("promote"), evidence=ENOUGH)
    assert s.action == "rollback" and why in s.why and "25% stage" in s.why, s


def test_the_evidence_cap_rolls_back_an_inconclusive_comparison():
    s = look(rollout(1), quality=verdict("inconclusive"), evidence={"labelled": 6000, "enough": True})
    assert s.action == "rollback" and "max_labelled" in s.why


def test_wait_hours_ends_a_rollout_that_holds():
    s = look(rollout(1), signals=Signals(error="refused"), wait_hours=3.0)
    assert s.action == "rollback" and "no decision after 3.0 hours" in s.why and "could not be read" in s.why
    assert look(rollout(1), signals=Signals(error="refused"), wait_hours=3.5).action == "hold"


def test_the_shipped_ramp_starts_in_the_shadow_and_ends_at_every_flight():
    cfg = DeployConfig.load()
    shares = [s["share"] for s in cfg.stages]
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares)
    assert ramp.ramp_text(cfg.stages) == "shadow -> 5% -> 25% -> 50% -> 100%"


@pytest.mark.parametrize(
    "stages, message",
    [
        ([], "at least one stage"),
        ([{"share": 0.5, "min_hours": 0, "min_requests": 1}], "must serve every flight"),
        (
            [{"share": 0.5, "min_hours": 0, "min_requests": 1}, {"share": 0.5, "min_hours": 0, "min_requests": 1}],
            "stages[1].share = 0.5 after stages[0].share = 0.5: the shares must rise",
        ),
        ([{"share": 1.5, "min_hours": 0, "min_requests": 1}], "stages[0].share = 1.5"),
        ([{"share": 1.0, "min_hours": -1, "min_requests": 1}], "stages[0].min_hours = -1"),
        ([{"share": 1.0, "min_hours": 0}], "missing"),
        ([{"share": 1.0, "min_hours": 0, "min_requests": 1, "wait": 2}], "'wait' is not one of its keys"),
    ],
)
def test_the_stage_list_is_checked_when_the_config_loads(stages, message):
    values = DeployConfig.load().as_dict() | {"stages": stages}
    with pytest.raises(ValueError) as err:
        DeployConfig(values, "deploy.yaml")
    assert message in str(err.value)


def test_a_harm_on_one_slice_rolls_back_at_any_stage_even_with_a_promote_verdict():
    quality = {"decision": "promote", "slices": {"harmed": ["origin=EWR"]}}
    for stage in (0, 1, 2):
        s = look(rollout(stage), quality=quality, evidence=ENOUGH)
        assert s.action == "rollback" and "harm on origin=EWR" in s.why, s
    assert look(rollout(2), quality={"decision": "promote", "slices": {"harmed": []}}, evidence=ENOUGH).action == (
        "promote"
    )


def test_a_slice_leaning_towards_harm_holds_the_share_and_the_promotion():
    """A promote verdict over every flight, but one judged slice is worse than the champion on its own interval
    and its mean difference is beyond the slice tolerance (harm not yet shown for all the slices together): no
    larger share, no promotion. A slice whose mean is beyond the tolerance by noise (its own interval holds 0),
    or a small one (not judged: no interval) does not hold."""
    ll = {"diff": -0.03, "tolerance": 0.005, "ci95": [-0.05, -0.01]}
    table = [{"column": "origin", "value": "EWR", "rows": 700, "diff": 0.045, "ci": [-0.01, 0.1], "ci95": [0.01, 0.08]}]
    leaning = {"decision": "promote", "logloss": ll, "slices": {"tolerance": 0.02, "harmed": [], "table": table}}
    s = look(rollout(1), quality=leaning, evidence=ENOUGH)
    assert s.action == "hold" and "on origin=EWR (700 flights) log-loss difference +0.0450" in s.why, s
    s = look(rollout(2), quality=leaning, evidence=ENOUGH)
    assert s.action == "hold" and "leans towards harm" in s.why, s
    noise = table[0] | {"ci": [-0.1, 0.14], "ci95": [-0.06, 0.1]}
    small = {k: v for k, v in table[0].items() if k not in ("ci", "ci95")}
    for row in (noise, small):
        q = {**leaning, "slices": {"tolerance": 0.02, "harmed": [], "table": [row]}}
        assert look(rollout(1), quality=q, evidence=ENOUGH).action == "advance"
        assert look(rollout(2), quality=q, evidence=ENOUGH).action == "promote"
