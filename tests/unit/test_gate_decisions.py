"""The evaluation gate, each check in both directions and at its boundary, against independent oracles.

Oracles: AUC from the Mann-Whitney rank sum (SciPy's ``rankdata``), expected calibration error from a plain
Python loop over the rows (10 equal-width bins, as ``include/mlops/core/metrics`` documents it),
slice counts from pandas. None of them calls the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from include.mlops.core.metrics import metrics
from include.mlops.evaluate.config import GateConfig
from include.mlops.evaluate.gate import decide, slice_table

N = 4000


def auc_oracle(y, p) -> float:
    """AUC as the Mann-Whitney U of the positives' ranks."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    ranks = rankdata(p)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def ece_oracle(y, p) -> float:
    """Expected calibration error, one row at a time: 10 bins of width 0.1, the top bin closed at 1."""
    sums: dict[int, list[float]] = {}
    for yi, pi in zip(y, p):
        pi = min(max(float(pi), 1e-7), 1 - 1e-7)
        b = min(int(pi * 10), 9)
        acc = sums.setdefault(b, [0.0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += float(yi)
        acc[2] += pi
    n = len(y)
    return sum(c / n * abs(sy / c - sp / c) for c, sy, sp in sums.values())


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"origin": rng.choice(["EWR", "JFK", "LGA"], N), "carrier": rng.choice(["AA", "UA"], N)})
    signal = rng.standard_normal(N)
    y = (signal + rng.standard_normal(N) > 0.7).astype(int)
    return frame, y, signal


def scores(signal, noise, seed=1):
    z = signal + noise * np.random.default_rng(seed).standard_normal(len(signal))
    return 1 / (1 + np.exp(-(1.6 * z - 1.2)))


LOOSE = GateConfig(min_auc=0.6, max_auc_drop=0.01, max_ece=0.2, min_slice_rows=200, max_slice_auc_drop=0.05)


def names(checks) -> list[str]:
    return [c.name for c in checks]


# ------------------------------------------------------------------------------------------------ oracles
def test_the_metrics_agree_with_the_oracles(data):
    _, y, s = data
    p = scores(s, 0.4)
    m = metrics(y, p)
    assert m["auc"] == pytest.approx(auc_oracle(y, p), abs=1e-12)
    assert m["ece"] == pytest.approx(ece_oracle(y, p), abs=1e-12)


def test_ece_hand_worked():
    # bin 0: scores 0.05, outcomes {0, 1} -> |0.5 - 0.05| = 0.45; bin 9: scores 0.95, outcomes {1, 1} -> 0.05
    y, p = [0, 1, 1, 1], [0.05, 0.05, 0.95, 0.95]
    assert ece_oracle(y, p) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    assert metrics(np.array(y), np.array(p))["ece"] == pytest.approx(0.25)
    # a score of exactly 1.0 belongs to the top bin, 0.0 to the bottom one
    assert metrics(np.array([1, 0]), np.array([1.0, 0.0]))["ece"] == pytest.approx(1e-7)


# ------------------------------------------------------------------------------------- calibration alone
def miscalibrated(p):
    """The same ranking (so the same AUC), scores pushed far below the observed rates."""
    return p**4


def test_the_gate_fails_on_calibration_alone(data):
    """kills: calibration check always passes."""
    frame, y, s = data
    good = scores(s, 0.3)
    bad = miscalibrated(good)
    assert auc_oracle(y, bad) == pytest.approx(auc_oracle(y, good), abs=1e-12)  # ranking untouched
    e_good, e_bad = ece_oracle(y, good), ece_oracle(y, bad)
    assert e_good < 0.05 < 0.15 < e_bad
    cfg = LOOSE.replace(max_ece=0.1)
    # the first model: judged on floor and calibration only
    first = decide(frame, y, bad, None, cfg)
    assert not first.passed and names(first.failed) == ["calibration"]
    cal = first.checks[1]
    assert cal.value == pytest.approx(e_bad, abs=1e-12) and cal.threshold == 0.1
    # against a champion with the same ranking: every other check passes, calibration alone fails it
    against = decide(frame, y, bad, good, cfg)
    assert not against.passed and names(against.failed) == ["calibration"]
    # and the well-calibrated version of the same scores passes
    assert decide(frame, y, good, good, cfg).passed
    assert decide(frame, y, good, None, cfg).passed


def test_calibration_threshold_is_inclusive(data):
    frame, y, s = data
    p = scores(s, 0.3)
    e = decide(frame, y, p, None, LOOSE).checks[1].value
    assert decide(frame, y, p, None, LOOSE.replace(max_ece=e)).passed
    below = decide(frame, y, p, None, LOOSE.replace(max_ece=math.nextafter(e, 0)))
    assert names(below.failed) == ["calibration"]


# ----------------------------------------------------------------------------------------------- AUC floor
def test_auc_floor_is_inclusive_and_binds(data):
    frame, y, s = data
    p = scores(s, 0.3)
    auc = auc_oracle(y, p)
    at = decide(frame, y, p, None, LOOSE.replace(min_auc=metrics(y, p)["auc"]))
    assert at.passed and at.checks[0].value == pytest.approx(auc, abs=1e-12)
    above = decide(frame, y, p, None, LOOSE.replace(min_auc=math.nextafter(metrics(y, p)["auc"], 1)))
    assert names(above.failed) == ["auc_floor"]
    assert above.checks[0].threshold == math.nextafter(metrics(y, p)["auc"], 1)


# ------------------------------------------------------------------------------------ against the champion
def test_auc_change_against_the_champion_both_ways_and_at_the_tolerance(data):
    """kills: AUC-drop comparison flipped."""
    frame, y, s = data
    strong, weak = scores(s, 0.2), scores(s, 0.6)
    a_strong, a_weak = auc_oracle(y, strong), auc_oracle(y, weak)
    assert a_strong - a_weak > 0.02
    cfg = LOOSE.replace(max_auc_drop=0.01, max_slice_auc_drop=1.0)
    better = decide(frame, y, strong, weak, cfg)
    assert better.passed
    chk = better.checks[2]
    assert chk.name == "auc_vs_champion" and chk.value == pytest.approx(a_strong - a_weak, abs=1e-12)
    assert chk.threshold == -0.01
    assert f"(change {a_strong - a_weak:+.4f}, tolerance -0.0100)" in chk.detail
    worse = decide(frame, y, weak, strong, cfg)
    assert names(worse.failed) == ["auc_vs_champion"]
    assert worse.checks[2].value == pytest.approx(a_weak - a_strong, abs=1e-12)
    # a drop of exactly the tolerance passes, a hair more fails
    drop = metrics(y, strong)["auc"] - metrics(y, weak)["auc"]
    assert decide(frame, y, weak, strong, cfg.replace(max_auc_drop=drop)).passed
    tight = decide(frame, y, weak, strong, cfg.replace(max_auc_drop=math.nextafter(drop, 0)))
    assert names(tight.failed) == ["auc_vs_champion"]


# ------------------------------------------------------------------------------------------------- slices
def test_the_gate_fails_on_one_slice_alone(data):
    frame, y, s = data
    champ = scores(s, 0.3)
    cand = champ.copy()
    ua = (frame["carrier"] == "UA").to_numpy()
    cand[ua] = scores(s, 1.5, seed=5)[ua]  # much worse on UA only, same calibration
    # the overall comparison cannot fail; slices by carrier (each origin holds both carriers)
    cfg = LOOSE.replace(max_auc_drop=1.0, slice_columns=("carrier",))
    d = decide(frame, y, cand, champ, cfg)
    assert names(d.failed) == ["slices"]
    regressed = {(r["column"], r["value"]) for r in d.slices if r["regression"]}
    assert regressed == {("carrier", "UA")}
    assert all(r["regression"] is False for r in d.slices if (r["column"], r["value"]) != ("carrier", "UA"))
    ua_row = next(r for r in d.slices if r["value"] == "UA")
    assert ua_row["candidate_auc"] == pytest.approx(auc_oracle(y[ua], cand[ua]), abs=1e-12)
    assert ua_row["champion_auc"] == pytest.approx(auc_oracle(y[ua], champ[ua]), abs=1e-12)
    slices = d.checks[3]
    judged = [r for r in d.slices]  # every slice here has rows and both classes
    worst = min(r["candidate_auc"] - r["champion_auc"] for r in judged)
    assert slices.value == pytest.approx(worst, abs=1e-12) and slices.threshold == -0.05
    assert slices.detail == (
        f"2 slice(s) judged, worst change {worst:+.4f}; regressions: carrier=UA "
        f"({ua_row['candidate_auc']:.3f} vs {ua_row['champion_auc']:.3f})"
    )
    # the same candidate without the UA damage passes
    assert decide(frame, y, champ, champ, cfg).passed


def test_a_slice_drop_of_exactly_the_tolerance_is_no_regression(data):
    frame, y, s = data
    champ = scores(s, 0.3)
    cand = champ.copy()
    jfk = (frame["origin"] == "JFK").to_numpy()
    cand[jfk] = scores(s, 0.8, seed=3)[jfk]
    cfg = LOOSE.replace(max_auc_drop=1.0, max_slice_auc_drop=1.0)
    row = next(r for r in decide(frame, y, cand, champ, cfg).slices if r["value"] == "JFK")
    gap = row["champion_auc"] - row["candidate_auc"]
    assert gap > 0.01
    assert decide(frame, y, cand, champ, cfg.replace(max_slice_auc_drop=gap)).passed
    tighter = decide(frame, y, cand, champ, cfg.replace(max_slice_auc_drop=math.nextafter(gap, 0)))
    assert names(tighter.failed) == ["slices"] and "origin=JFK" in tighter.checks[3].detail


K = 300


@pytest.fixture(scope="module")
def small_slice(data):
    """A carrier with exactly K flights on which the candidate is useless, better than the champion elsewhere."""
    frame, y, s = data
    frame = frame.copy()
    frame["carrier"] = ["XX"] * K + ["AA"] * (N - K)
    champ = scores(s, 0.3)
    cand = scores(s, 0.1)
    cand[:K] = np.random.default_rng(9).uniform(0.05, 0.6, K)
    return frame, y, cand, champ


def test_min_slice_rows_binds(small_slice):
    """kills: gate ignores min_slice_rows."""
    frame, y, cand, champ = small_slice
    cfg = LOOSE.replace(max_auc_drop=1.0, slice_columns=("carrier",))
    at = decide(frame, y, cand, champ, cfg.replace(min_slice_rows=K))  # just at it: judged
    assert names(at.failed) == ["slices"]
    assert at.checks[-1].detail.startswith("2 slice(s) judged") and "carrier=XX" in at.checks[-1].detail
    above = decide(frame, y, cand, champ, cfg.replace(min_slice_rows=K + 1))  # just under it: not judged
    assert above.passed, above.summary()
    assert above.checks[-1].detail.startswith("1 slice(s) judged")
    xx = next(r for r in above.slices if r["value"] == "XX")
    assert xx["rows"] == K and xx["regression"] is False
    # no slice big enough: nothing judged, the check passes with a worst change of 0
    none = decide(frame, y, cand, champ, cfg.replace(min_slice_rows=N + 1))
    assert none.passed and none.checks[-1].value == 0.0
    assert none.checks[-1].detail == "0 slice(s) judged, worst change +0.0000"


def test_a_slice_with_one_class_is_not_judged(data):
    frame, y, s = data
    frame = frame.copy()
    frame["carrier"] = np.where(y == 1, "AA", "ZZ")  # ZZ has no delayed flight, AA only delayed ones
    frame.loc[np.flatnonzero(y == 0)[:50], "carrier"] = "AA"
    champ = scores(s, 0.3)
    cand = champ.copy()
    zz = (frame["carrier"] == "ZZ").to_numpy()
    cand[zz] = 1 - cand[zz]  # reversed: a disaster if ZZ could be scored
    d = decide(frame, y, cand, champ, LOOSE.replace(max_auc_drop=1.0, max_ece=1.0, slice_columns=("carrier",)))
    zz_row = next(r for r in d.slices if r["value"] == "ZZ")
    assert math.isnan(zz_row["candidate_auc"]) and math.isnan(zz_row["champion_auc"])
    assert zz_row["positive_rate"] == 0.0 and zz_row["regression"] is False
    slices = d.checks[-1]
    assert slices.passed and slices.detail == "1 slice(s) judged, worst change +0.0000"


def test_slice_table_against_pandas(data):
    frame, y, s = data
    cand, champ = scores(s, 0.3), scores(s, 0.5)
    rows = slice_table(frame, y, cand, champ, ("origin", "carrier"))
    assert [(r["column"], r["value"]) for r in rows] == [
        ("origin", "EWR"),
        ("origin", "JFK"),
        ("origin", "LGA"),
        ("carrier", "AA"),
        ("carrier", "UA"),
    ]
    for r in rows:
        m = (frame[r["column"]] == r["value"]).to_numpy()
        assert r["rows"] == int(m.sum()) and r["positive_rate"] == pytest.approx(y[m].mean(), abs=1e-12)
        assert r["candidate_auc"] == pytest.approx(auc_oracle(y[m], cand[m]), abs=1e-12)
        assert r["champion_auc"] == pytest.approx(auc_oracle(y[m], champ[m]), abs=1e-12)
    first = slice_table(frame, y, cand, None, ("origin",))
    assert all(r["champion_auc"] is None and r["candidate_auc"] == r["candidate_auc"] for r in first)


# --------------------------------------------------------------------------------- the decision as a record
def test_the_summary_names_every_check(data):
    frame, y, s = data
    good = scores(s, 0.3)
    d = decide(frame, y, good, None, LOOSE)
    m = metrics(y, good)
    assert d.summary() == (
        f"gate PASSED\n"
        f"  ok   auc_floor: candidate AUC {m['auc']:.4f} vs floor 0.6000\n"
        f"  ok   calibration: expected calibration error {m['ece']:.4f} vs max 0.2000"
    )
    assert d.candidate == m and d.champion is None and d.config == LOOSE.as_dict()
    bad = decide(frame, y, miscalibrated(good), good, LOOSE.replace(max_ece=0.1, max_slice_auc_drop=0.0))
    lines = bad.summary().splitlines()
    assert lines[0] == "gate FAILED: calibration" or lines[0].startswith("gate FAILED: calibration, ")
    assert lines[1].startswith("  ok   auc_floor: ") and lines[2].startswith("  FAIL calibration: ")
    assert lines[3].startswith("  ok   auc_vs_champion: candidate AUC ")
    record = bad.to_dict()
    assert record["failed"] == [c.name for c in bad.failed] and record["passed"] is False
    assert [c["name"] for c in record["checks"]] == ["auc_floor", "calibration", "auc_vs_champion", "slices"]
    assert record["champion"] == metrics(y, good)


def test_every_regressed_slice_is_named(data):
    frame, y, s = data
    champ = scores(s, 0.3)
    cand = champ.copy()
    for origin, seed in (("JFK", 5), ("LGA", 6)):
        m = (frame["origin"] == origin).to_numpy()
        cand[m] = scores(s, 1.5, seed=seed)[m]
    d = decide(frame, y, cand, champ, LOOSE.replace(max_auc_drop=1.0, slice_columns=("origin",)))
    rows = {r["value"]: r for r in d.slices}
    named = ", ".join(
        f"origin={o} ({rows[o]['candidate_auc']:.3f} vs {rows[o]['champion_auc']:.3f})" for o in ("JFK", "LGA")
    )
    assert d.checks[-1].detail.endswith("; regressions: " + named)


def test_a_slice_with_a_single_delayed_flight_is_still_judged(data):
    frame, y, s = data
    frame = frame.copy()
    one = np.flatnonzero(y == 1)[:1].tolist() + np.flatnonzero(y == 0)[:399].tolist()
    frame["carrier"] = "AA"
    frame.loc[one, "carrier"] = "XX"  # 400 flights, one of them delayed
    champ = scores(s, 0.3)
    row = next(r for r in slice_table(frame, y, champ, champ, ("carrier",)) if r["value"] == "XX")
    assert row["rows"] == 400 and row["positive_rate"] == 1 / 400
    assert row["candidate_auc"] == pytest.approx(auc_oracle(y[one], champ[one]), abs=1e-12)


def test_unused_categories_make_no_slice(data):
    frame, y, s = data
    frame = frame.assign(origin=pd.Categorical(frame["origin"], categories=["EWR", "JFK", "LGA", "BOS"]))
    rows = slice_table(frame, y, scores(s, 0.3), None, ("origin",))
    assert [r["value"] for r in rows] == ["EWR", "JFK", "LGA"] and all(r["rows"] > 0 for r in rows)


# ------------------------------------------------------------------------------------ against the baseline kind
def test_beats_baseline_judges_only_when_set_and_given_and_binds_at_the_margin(data):
    frame, y, s = data
    cand, base = scores(s, 0.3), scores(s, 1.0, seed=2)
    gain = metrics(y, cand)["auc"] - metrics(y, base)["auc"]
    assert gain > 0
    assert "beats_baseline" not in names(decide(frame, y, cand, None, LOOSE, base).checks)  # null: not judged
    assert "beats_baseline" not in names(decide(frame, y, cand, None, LOOSE.replace(min_auc_over_baseline=0.0)).checks)
    at = decide(frame, y, cand, None, LOOSE.replace(min_auc_over_baseline=gain), base)
    assert at.passed and at.checks[-1].name == "beats_baseline" and at.checks[-1].value == pytest.approx(gain)
    above = decide(frame, y, cand, None, LOOSE.replace(min_auc_over_baseline=math.nextafter(gain, 1)), base)
    assert names(above.failed) == ["beats_baseline"] and "vs baseline" in above.checks[-1].detail
    # a candidate no better than the baseline fails a zero margin
    worse = decide(frame, y, base, None, LOOSE.replace(min_auc=0.5, max_ece=1.0, min_auc_over_baseline=0.0), cand)
    assert names(worse.failed) == ["beats_baseline"]
