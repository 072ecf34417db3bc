"""The rollout's transitions (``include/mlops/deploy/transitions.py``), without Airflow, on a real MLflow registry
(the embedded store, a registered model of this module's own) and a real lake.

Each transition writes the registry's aliases first and the rollout's state last. A crash between the two (the
rollout's write cut off) must leave the prediction service routing nowhere a transition did not mean it to
(``rollouts.canary_share`` of what is left), and be repaired: by a retry of the same transition, or, when none
comes, by the next run's ``start`` (``repair``), which closes the stale canary as the registry says.

Kills: a transition that writes the rollout before the registry (a crash then sends a canary share to a version
the registry never made challenger, or records a promotion the registry never made); a retry that is not
idempotent; a stale "canary" left blocking every later canary; a repair that closes a canary the registry still
backs, one whose challenger the gate renamed, or one another active run watches; a resurrected rolled-back
canary."""

from __future__ import annotations

import uuid

import pytest
from tiny_models import tiny_version

from include.mlops.core import layout, registry, rollouts
from include.mlops.core.lake import Lake
from include.mlops.deploy import transitions

DATE = "2013-02-04"


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Three registered versions of a model of this module's own: "1", "2", "3" by registration order."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLOPS_MODEL_NAME", f"transitions_{uuid.uuid4().hex[:8]}")
    folder = tmp_path_factory.mktemp("models")
    out = [tiny_version(folder, reason="transitions", seed=s) for s in (1, 2, 3)]
    yield out
    mp.undo()


@pytest.fixture
def lake(tmp_path, versions):
    """A lake of this test's own, the registry as ``given`` leaves it: v1 champion, no challenger."""
    given(champion=versions[0])
    return Lake((tmp_path / "lake").as_uri())


def given(champion: str | None = None, challenger: str | None = None) -> None:
    for alias, version in (("champion", champion), ("challenger", challenger)):
        if version is None:
            registry.delete_alias(alias)
        else:
            registry.set_alias(alias, version)


def aliases() -> tuple[str | None, str | None]:
    found = [registry.alias_version(a) for a in ("champion", "challenger")]
    return tuple(v["version"] if v else None for v in found)


def serving(lake) -> tuple[str | None, str | None, float]:
    """What the prediction service routes on: champion, challenger, and the challenger's share."""
    champion, challenger = aliases()
    return champion, challenger, rollouts.canary_share(rollouts.current(lake), challenger)


def history(lake) -> list[dict]:
    return [lake.read_json(layout.past_rollouts(), f) for f in lake.ls(layout.past_rollouts())]


def nobody(run_id: str) -> bool:
    return False


def date() -> str:
    return DATE


class Crash(BaseException):
    """The worker lost between the registry's write and the rollout's."""


@pytest.fixture
def crash_at_rollout(monkeypatch):
    """From when it is called, the next write of ``deployments/rollout.json`` dies before it writes."""

    def arm():
        real = Lake.write_json

        def write_json(self, obj, *parts):
            if parts == layout.rollout():
                monkeypatch.setattr(Lake, "write_json", real)  # the crash comes once
                raise Crash("killed before the rollout's write")
            return real(self, obj, *parts)

        monkeypatch.setattr(Lake, "write_json", write_json)

    return arm


def ramp(share: float) -> list[dict]:
    """A ramp whose first stage serves ``share`` of flights: the rollout's canary_share while it is there."""
    return [{"share": share, "min_hours": 0, "min_requests": 0}, {"share": 1.0, "min_hours": 0, "min_requests": 0}]


def started(
    lake, version: str, run_id: str = "run-a", share: float = 0.2, baseline=lambda: None
) -> transitions.Started:
    return transitions.start(lake, version, ramp(share), date, run_id, nobody, baseline)


# the transitions --------------------------------------------------------------------------------------------
def test_plan_promotes_directly_without_a_champion_or_for_the_champion_itself(lake, versions):
    v1, v2, _ = versions
    assert transitions.plan("canary", v2) == "canary"
    assert transitions.plan("canary", v1) == "promote"
    assert transitions.plan("promote", v2) == "promote" and transitions.plan("rollback", v2) == "rollback"
    given(champion=None)
    assert transitions.plan("canary", v2) == "promote"


def test_start_makes_the_version_challenger_and_runs_its_canary(lake, versions):
    v1, v2, _ = versions
    s = started(lake, v2, baseline=lambda: ["the service's counters"])
    assert s.step == "start" and s.champion == v1
    assert s.rollout == rollouts.current(lake)
    assert {k: s.rollout[k] for k in ("version", "champion", "status", "owner", "from_date", "data_date")} == {
        "version": v2,
        "champion": v1,
        "status": "canary",
        "owner": "run-a",
        "from_date": "2013-02-05",
        "data_date": DATE,
    }
    assert (s.rollout["stages"], s.rollout["stage"], s.rollout["canary_share"]) == (ramp(0.2), 0, 0.2)
    assert s.rollout["baseline"] == ["the service's counters"]
    assert serving(lake) == (v1, v2, 0.2)
    # a retry of the run's own task: resumed, clock, evidence and the stage's counters kept (none asked again)
    again = started(lake, v2, baseline=lambda: pytest.fail("a resumed canary keeps its stage's counters"))
    assert again.step == "resume" and again.rollout == s.rollout
    adopted = started(lake, v2, run_id="run-b")  # its run is over: adopted
    assert adopted.step == "adopt" and adopted.rollout["adopted_from"] == "run-a"
    assert adopted.rollout["started_at"] == s.rollout["started_at"]


def test_start_refuses_without_a_champion_or_with_a_canary_in_the_way_changing_nothing(lake, versions):
    v1, v2, v3 = versions
    given(champion=None)
    with pytest.raises(transitions.Refused, match="the champion disappeared since plan"):
        started(lake, v2)
    assert rollouts.current(lake) is None and aliases() == (None, None)
    given(champion=v1)
    started(lake, v2)
    before = lake.read_bytes(*layout.rollout())
    with pytest.raises(transitions.Refused, match=f"a canary of v{v2} \\(20% of flights"):
        started(lake, v3, run_id="run-b")
    with pytest.raises(transitions.Refused, match="which is still queued or running"):
        transitions.start(lake, v3, ramp(0.2), date, "run-b", lambda run: True)
    assert lake.read_bytes(*layout.rollout()) == before and aliases() == (v1, v2)


@pytest.mark.parametrize("decision", ["promote", "rollback"])
def test_decide_sets_the_aliases_then_ends_the_rollout_with_its_evidence(lake, versions, decision):
    v1, v2, _ = versions
    started(lake, v2)
    result = {"decision": decision, "flights": 900, "why": "test"}
    ended = transitions.decide(lake, v2, "run-a", result)
    champion = v2 if decision == "promote" else v1
    assert ended == transitions.Ended(v2, decision, champion=champion, report=lake.uri(*layout.canary_evidence(v2)))
    assert serving(lake) == (champion, None, 0.0)
    assert lake.read_json(*layout.canary_evidence(v2)) == result
    rollout = rollouts.current(lake)
    assert rollout["status"] == ("promoted" if decision == "promote" else "rolled_back")
    assert rollout["evidence"] == result and history(lake) == [rollout]


def test_decide_refuses_another_runs_canary_no_canary_or_no_decision(lake, versions):
    _, v2, v3 = versions
    with pytest.raises(transitions.Refused, match=f"no canary of v{v2} is running"):
        transitions.decide(lake, v2, "run-a", {"decision": "promote"})
    started(lake, v2)
    with pytest.raises(transitions.Refused, match="watched by deploy_model run run-a now, not this one"):
        transitions.decide(lake, v2, "run-b", {"decision": "promote"})
    with pytest.raises(transitions.Refused, match=f"no canary of v{v3} is running"):
        transitions.decide(lake, v3, "run-a", {"decision": "promote"})
    with pytest.raises(transitions.Refused, match="no decision from wait_for_evidence: None"):
        transitions.decide(lake, v2, "run-a", None)
    with pytest.raises(transitions.Refused, match="no decision from wait_for_evidence"):
        transitions.decide(lake, v2, "run-a", {"decision": "inconclusive"})
    assert rollouts.current(lake)["status"] == "canary" and aliases()[1] == v2


def test_promote_now_records_the_first_model_and_replaces_a_running_canary(lake, versions):
    v1, v2, v3 = versions
    given(champion=None)
    first = transitions.promote(lake, v1, date, manual=False)
    assert first == transitions.Ended(v1, "promote", champion=v1, before=None)
    assert rollouts.current(lake)["status"] == "promoted" and rollouts.current(lake)["champion"] is None
    assert rollouts.current(lake)["evidence"] == {"manual": False}

    started(lake, v2)
    by_hand = transitions.promote(lake, v3, date, manual=True)  # a canary of v2 runs: replaced by the record
    assert by_hand.before == v1 and serving(lake) == (v3, None, 0.0)
    record = rollouts.current(lake)
    assert (record["version"], record["champion"], record["status"]) == (v3, v1, "promoted")

    transitions.promote(lake, v2, lambda: pytest.fail("no record to write: no date asked"), manual=True)
    assert rollouts.current(lake) == record and aliases() == (v2, None)  # a finished rollout is kept


def test_rollback_now_refuses_the_champion_and_ends_the_versions_canary(lake, versions):
    v1, v2, v3 = versions
    with pytest.raises(transitions.Refused, match=f"v{v1} is the champion"):
        transitions.rollback(lake, v1)
    started(lake, v2)
    transitions.rollback(lake, v3)  # not the running canary: nothing of it changes
    assert serving(lake) == (v1, v2, 0.2)
    assert transitions.rollback(lake, v2) == transitions.Ended(v2, "rollback")
    assert serving(lake) == (v1, None, 0.0)
    assert rollouts.current(lake)["status"] == "rolled_back"
    assert rollouts.current(lake)["evidence"] == {"manual": True}


def test_abandon_rolls_back_or_closes_what_decide_promoted_and_refuses_what_is_not_its_own(lake, versions):
    v1, v2, _ = versions
    with pytest.raises(transitions.NothingToAbandon, match=f"no canary of v{v2} is running"):
        transitions.abandon(lake, v2, "run-a")
    started(lake, v2)
    with pytest.raises(transitions.NothingToAbandon, match="watched by deploy_model run run-a: it decides"):
        transitions.abandon(lake, v2, "run-b")
    assert transitions.abandon(lake, v2, "run-a") == transitions.Ended(v2, "rollback")
    assert serving(lake) == (v1, None, 0.0) and rollouts.current(lake)["status"] == "rolled_back"

    started(lake, v2)
    given(champion=v2, challenger=v2)  # decide promoted it, then failed before the rollout's end
    assert transitions.abandon(lake, v2, "run-a").decision == "promote"
    assert serving(lake) == (v2, None, 0.0) and rollouts.current(lake)["status"] == "promoted"


# a crash between the registry's write and the rollout's ------------------------------------------------------
def _decide(decision):
    return lambda lake, v: transitions.decide(lake, v, "run-a", {"decision": decision, "flights": 1})


CUT_OFF = {
    "decide promote": (_decide("promote"), "promoted"),
    "decide rollback": (_decide("rollback"), "rolled_back"),
    "promote now": (lambda lake, v: transitions.promote(lake, v, date, manual=True), "promoted"),
    "rollback now": (lambda lake, v: transitions.rollback(lake, v), "rolled_back"),
    "abandon": (lambda lake, v: transitions.abandon(lake, v, "run-a"), "rolled_back"),
}


@pytest.mark.parametrize("transition, status", CUT_OFF.values(), ids=CUT_OFF.keys())
def test_a_transition_cut_off_before_the_rollouts_write_sends_no_canary_traffic_and_a_retry_ends_it(
    lake, versions, crash_at_rollout, transition, status
):
    v1, v2, _ = versions
    started(lake, v2)
    crash_at_rollout()
    with pytest.raises(Crash):
        transition(lake, v2)
    champion = v2 if status == "promoted" else v1
    assert rollouts.current(lake)["status"] == "canary"  # the record is stale...
    assert serving(lake) == (champion, None, 0.0)  # ...and the service already serves what the registry says
    transition(lake, v2)  # the task's retry
    assert serving(lake) == (champion, None, 0.0)
    assert rollouts.current(lake)["status"] == status and len(history(lake)) == 1


@pytest.mark.parametrize("transition, status", CUT_OFF.values(), ids=CUT_OFF.keys())
def test_without_a_retry_the_next_runs_start_closes_the_stale_canary_as_the_registry_says(
    lake, versions, crash_at_rollout, transition, status
):
    v1, v2, v3 = versions
    started(lake, v2)
    crash_at_rollout()
    with pytest.raises(Crash):
        transition(lake, v2)
    champion = v2 if status == "promoted" else v1
    s = started(lake, v3, run_id="run-b")  # not refused as "a canary in the way": repaired, then started
    assert s.step == "start" and s.champion == champion
    (closed,) = history(lake)
    assert (closed["version"], closed["status"], closed["canary_share"]) == (v2, status, 0.0)
    assert closed["evidence"]["repaired"] is True and "closed by deploy_model run run-b" in closed["evidence"]["why"]
    assert serving(lake) == (champion, v3, 0.2) and rollouts.current(lake)["owner"] == "run-b"


def test_a_rolled_back_canary_cut_off_is_not_resurrected_by_its_own_versions_next_run(lake, versions, crash_at_rollout):
    """Without the repair its version's next run adopted the stale canary and set the challenger again: the
    rolled-back version served once more, on its old clock and evidence."""
    v1, v2, _ = versions
    first = started(lake, v2)
    crash_at_rollout()
    with pytest.raises(Crash):
        transitions.rollback(lake, v2)
    again = started(lake, v2, run_id="run-b")
    assert again.step == "start" and again.rollout["started_at"] != first.rollout["started_at"]
    assert [h["status"] for h in history(lake)] == ["rolled_back"]


def test_start_cut_off_before_the_rollouts_write_leaves_a_challenger_without_traffic(lake, versions, crash_at_rollout):
    v1, v2, _ = versions
    crash_at_rollout()
    with pytest.raises(Crash):
        started(lake, v2)
    assert rollouts.current(lake) is None and serving(lake) == (v1, v2, 0.0)  # as the gate leaves a pass
    assert transitions.repair(lake, "run-a", nobody) is None  # nothing to repair
    assert started(lake, v2).step == "start" and serving(lake) == (v1, v2, 0.2)  # the retry starts it


def test_repair_leaves_every_canary_that_is_not_a_cut_off_transition(lake, versions):
    v1, v2, v3 = versions
    assert transitions.repair(lake, "run-b", nobody) is None  # no rollout
    started(lake, v2)
    before = lake.read_bytes(*layout.rollout())
    assert transitions.repair(lake, "run-b", nobody) is None  # the registry backs it: a canary
    given(champion=v1, challenger=v3)  # the gate named a new challenger while the canary runs
    assert transitions.repair(lake, "run-b", nobody) is None
    with pytest.raises(transitions.Refused, match=f"a canary of v{v2}"):  # refused by name, as before
        started(lake, v3, run_id="run-b")
    given(champion=v1, challenger=None)
    assert transitions.repair(lake, "run-b", lambda run: run == "run-a") is None  # its run still decides it
    assert lake.read_bytes(*layout.rollout()) == before and history(lake) == []
    closed = transitions.repair(lake, "run-b", nobody)
    assert closed["status"] == "rolled_back" and rollouts.current(lake) == closed
