"""Drift statistics in every direction: shifted up and down, wider and narrower, categories gained and lost.

Oracles: SciPy (``ks_2samp``, ``wasserstein_distance``, ``jensenshannon``, the normal CDF) and PSI worked by
hand on shares derived from the bins, never through ``drift.psi_from_shares``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from include.mlops.core import profile as profile_sketch
from include.mlops.monitor import drift

EPS = 1e-4  # the share floor the module documents (Evidently's)


def psi_by_hand(ref_shares, cur_shares) -> float:
    total = 0.0
    for r, c in zip(ref_shares, cur_shares):
        r, c = max(r, EPS), max(c, EPS)
        total += (c - r) * math.log(c / r)
    return total


@pytest.fixture(scope="module")
def ref():
    return np.random.default_rng(11).normal(0.0, 1.0, 40000)


@pytest.fixture(scope="module")
def profile(ref):
    return profile_sketch.numeric_profile(ref)


# ----------------------------------------------------------------------------------- KS, both directions
@pytest.mark.parametrize("shift", [-1.0, 1.0])
def test_ks_sees_a_shift_down_as_well_as_up(ref, profile, shift):
    """kills: KS made one-sided (exact); kills: KS made one-sided (profile). Colder weather must raise drift
    as warmer weather does."""
    cur = np.random.default_rng(12).normal(shift, 1.0, 20000)
    expected = 2 * stats.norm.cdf(0.5) - 1  # population D of a 1 sd shift: 0.3829
    exact = drift.ks_statistic(ref, cur)
    assert exact == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert exact == pytest.approx(expected, abs=0.02)
    got = drift.numeric_drift(profile, cur)
    assert got["ks"] == pytest.approx(exact, abs=0.005)
    assert got["ks"] > 0.3


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_ks_sees_wider_and_narrower(ref, profile, scale):
    cur = np.random.default_rng(13).normal(0.0, scale, 20000)
    x = np.linspace(-6, 6, 120001)
    expected = float(np.max(np.abs(stats.norm.cdf(x) - stats.norm.cdf(x / scale))))
    exact = drift.ks_statistic(ref, cur)
    assert exact == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert exact == pytest.approx(expected, abs=0.02)
    assert drift.numeric_drift(profile, cur)["ks"] == pytest.approx(exact, abs=0.005)


def test_ks_is_symmetric_and_bounded():
    a, b = np.arange(10.0), np.arange(10.0) + 100
    assert drift.ks_statistic(a, b) == drift.ks_statistic(b, a) == 1.0
    assert drift.ks_statistic([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == pytest.approx(1 / 3)
    assert math.isnan(drift.ks_statistic([], [1.0])) and math.isnan(drift.ks_statistic([1.0], [np.nan]))


# ------------------------------------------------------------------------------------ PSI, hand-worked
UNIFORM = (np.arange(100000) + 0.5) / 100000  # its deciles, the bin edges, lie within 1e-5 of 0.1 .. 0.9
CENTRES_UP = np.repeat([0.55, 0.65, 0.75, 0.85, 0.95], 200)
CENTRES_DOWN = np.repeat([0.05, 0.15, 0.25, 0.35, 0.45], 200)


@pytest.mark.parametrize("cur", [CENTRES_UP, CENTRES_DOWN], ids=["top-half", "bottom-half"])
def test_psi_hand_worked_both_directions(cur):
    # five bins hold a fifth each, five are empty (floored at EPS); reference: a tenth in each bin
    full = (0.2 - 0.1) * math.log(0.2 / 0.1)
    empty = (EPS - 0.1) * math.log(EPS / 0.1)
    expected = 5 * full + 5 * empty
    assert expected == pytest.approx(3.7970, abs=1e-4)
    edges = profile_sketch.psi_edges(UNIFORM)
    assert edges == pytest.approx([0.1 * k for k in range(1, 10)], abs=1e-4)
    assert profile_sketch.bin_shares(UNIFORM, edges) == pytest.approx([0.1] * 10, abs=1e-12)
    shares = profile_sketch.bin_shares(cur, edges)
    assert shares == pytest.approx([0.2] * 5 + [0.0] * 5 if cur is CENTRES_DOWN else [0.0] * 5 + [0.2] * 5)
    assert drift.psi(UNIFORM, cur) == pytest.approx(expected, rel=1e-9)
    prof = profile_sketch.numeric_profile(UNIFORM)
    assert prof["psi_shares"] == pytest.approx([0.1] * 10, abs=1e-12)
    assert drift.numeric_drift(prof, cur)["psi"] == pytest.approx(expected, rel=1e-9)


def test_psi_of_a_small_shift_by_hand():
    # three of the ten reference bins lose half their share to their neighbour above
    cur = np.concatenate(
        [
            np.repeat([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95], 100),
            np.repeat([0.15, 0.35, 0.95], 50),
        ]
    )
    cur = np.delete(cur, np.r_[0:50, 200:250, 800:850])  # half of the 0.05, 0.25 and 0.85 bins
    c = np.array([50, 150, 50, 150, 100, 100, 100, 100, 50, 150]) / 1000
    assert profile_sketch.bin_shares(cur, profile_sketch.psi_edges(UNIFORM)) == pytest.approx(c)
    expected = sum((ci - 0.1) * math.log(ci / 0.1) for ci in c)
    assert drift.psi(UNIFORM, cur) == pytest.approx(expected, rel=1e-9)
    # three bins at half their share, three at one and a half, four unchanged
    assert expected == pytest.approx(3 * (-0.05) * math.log(0.5) + 3 * 0.05 * math.log(1.5), rel=1e-12)


def test_a_value_on_an_edge_falls_in_the_bin_below():
    edges = np.array([1.0, 2.0])
    assert profile_sketch.bin_shares([1.0, 2.0, 2.5], edges).tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert profile_sketch.bin_shares([0.5, 1.0], edges).tolist() == [1.0, 0.0, 0.0]
    assert profile_sketch.bin_shares([], edges).tolist() == [0.0, 0.0, 0.0]
    assert profile_sketch.bin_shares([5.0], edges).tolist() == [0.0, 0.0, 1.0]


def test_none_counts_as_missing_like_nan():
    assert profile_sketch.missing_share([1.0, None]) == 0.5
    assert drift.ks_statistic([1.0, 2.0, None], [1.0, 2.0]) == 0.0
    assert profile_sketch.numeric_profile([1.0, None])["rows"] == 1


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_psi_wider_and_narrower_against_the_normal_cdf(ref, profile, scale):
    cur = np.random.default_rng(14).normal(0.0, scale, 200000)
    inner = stats.norm.ppf(np.linspace(0, 1, 11)[1:-1])  # the population deciles of N(0, 1)
    cdf = np.concatenate([[0.0], stats.norm.cdf(inner / scale), [1.0]])
    expected = psi_by_hand([0.1] * 10, np.diff(cdf))
    assert expected > 0.25
    assert drift.psi(ref, cur) == pytest.approx(expected, rel=0.06)
    assert drift.numeric_drift(profile, cur)["psi"] == pytest.approx(expected, rel=0.06)


def test_psi_edges_of_a_discrete_feature_and_of_nothing():
    assert profile_sketch.psi_edges([1.0] * 50 + [2.0] * 50).tolist() == [1.0, 1.5, 2.0]
    assert profile_sketch.psi_edges([np.nan]).size == 0 and profile_sketch.psi_edges([]).size == 0
    assert profile_sketch.psi_edges(np.arange(101.0), bins=4).tolist() == [25.0, 50.0, 75.0]


# --------------------------------------------------------------------------------------------- Wasserstein
@pytest.mark.parametrize(
    "cur_params", [(-1.0, 1.0), (1.0, 1.0), (0.0, 0.5), (0.0, 2.0)], ids=["down", "up", "narrower", "wider"]
)
def test_wasserstein_in_every_direction_against_scipy(ref, profile, cur_params):
    cur = np.random.default_rng(15).normal(*cur_params, 20000)
    exact = drift.wasserstein(ref, cur)
    assert exact == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-9)
    assert drift.wasserstein(ref, cur, normed=False) == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-9)
    mu, sd = cur_params
    theory = abs(mu) if sd == 1.0 else abs(sd - 1) * math.sqrt(2 / math.pi)  # W1 of N(0,1) vs N(mu, sd)
    assert exact == pytest.approx(theory, abs=0.03)
    assert drift.numeric_drift(profile, cur)["wasserstein"] == pytest.approx(exact, rel=0.05, abs=0.005)


def test_wasserstein_of_a_constant_reference():
    prof = profile_sketch.numeric_profile([3.0] * 100)
    assert prof["std"] == 0.0
    assert drift.numeric_drift(prof, [4.0] * 10)["wasserstein"] == math.inf
    assert drift.numeric_drift(prof, [3.0] * 10)["wasserstein"] == 0.0
    assert drift.wasserstein([3.0, 3.0], [3.0, 3.0]) == 0.0
    assert drift.wasserstein([3.0, 3.0], [4.0, 4.0]) == math.inf
    assert drift.wasserstein([3.0, 3.0], [4.0, 4.0], normed=False) == 1.0
    assert math.isnan(drift.wasserstein([], [1.0])) and math.isnan(drift.wasserstein([1.0], []))


# ------------------------------------------------------------------------------------------------ categories
REF = {"EWR": 0.5, "JFK": 0.3, "LGA": 0.2}


def test_a_category_lost():
    cur = ["EWR"] * 60 + ["JFK"] * 40  # LGA gone
    got = drift.categorical_drift(REF, cur)
    # keys in order EWR, JFK, LGA, unseen
    expected = psi_by_hand([0.5, 0.3, 0.2, 0.0], [0.6, 0.4, 0.0, 0.0])
    assert expected == pytest.approx(0.1 * math.log(1.2) + 0.1 * math.log(4 / 3) + (EPS - 0.2) * math.log(EPS / 0.2))
    assert got["psi"] == pytest.approx(expected, rel=1e-12)
    assert got["js"] == pytest.approx(jensenshannon([0.5, 0.3, 0.2, 0.0], [0.6, 0.4, 0.0, 0.0]), rel=1e-9)
    assert got["unseen_share"] == 0.0


def test_a_category_gained():
    cur = ["EWR"] * 50 + ["JFK"] * 30 + ["LGA"] * 0 + ["BOS"] * 15 + ["PHL"] * 5  # two airports never seen
    got = drift.categorical_drift(REF, cur)
    assert got["unseen_share"] == pytest.approx(0.2)
    p, q = [0.5, 0.3, 0.2, 0.0], [0.5, 0.3, 0.0, 0.2]
    assert got["psi"] == pytest.approx(psi_by_hand(p, q), rel=1e-12)
    assert got["js"] == pytest.approx(jensenshannon(p, q), rel=1e-9)


def test_categories_unchanged_and_reweighted():
    same = drift.categorical_drift(REF, ["EWR"] * 5 + ["JFK"] * 3 + ["LGA"] * 2)
    assert same == {"psi": 0.0, "js": 0.0, "kl": 0.0, "unseen_share": 0.0}
    moved = drift.categorical_drift(REF, ["EWR"] * 2 + ["JFK"] * 3 + ["LGA"] * 5)
    p, q = [0.5, 0.3, 0.2, 0.0], [0.2, 0.3, 0.5, 0.0]
    assert moved["psi"] == pytest.approx(psi_by_hand(p, q)) and moved["js"] == pytest.approx(jensenshannon(p, q))


def test_missing_categories_are_left_out_and_nothing_left_is_undefined():
    shares = profile_sketch.category_shares(["a", None, "b", "b", np.nan])
    assert shares == {"b": pytest.approx(2 / 3), "a": pytest.approx(1 / 3)}
    assert profile_sketch.category_shares(["a", "c"], ["a", "b"]) == {"a": 0.5, profile_sketch.UNSEEN: 0.5}
    empty = drift.categorical_drift(REF, [None, None])
    assert all(math.isnan(v) for v in empty.values())  # nothing left: every statistic undefined, not drift
    prof = profile_sketch.categorical_profile(["a", None, "b", "b"])
    assert prof == {
        "kind": "categorical",
        "rows": 3,
        "missing": 0.25,
        "shares": {"b": pytest.approx(2 / 3), "a": pytest.approx(1 / 3)},
    }
    assert profile_sketch.categorical_profile([])["missing"] == 0.0


def test_js_normalises_its_inputs_and_is_symmetric():
    assert drift.js_distance([2, 2], [1, 3]) == pytest.approx(jensenshannon([0.5, 0.5], [0.25, 0.75]), rel=1e-12)
    assert drift.js_distance([1, 0], [0, 1]) == pytest.approx(math.sqrt(math.log(2)), rel=1e-12)  # disjoint
    assert drift.js_distance([0.2, 0.8], [0.6, 0.4]) == pytest.approx(drift.js_distance([0.6, 0.4], [0.2, 0.8]))


# ------------------------------------------------------------------------------------- missing values, profile
def test_missing_shares_in_both_directions(ref, profile):
    holes = ref[:1000].copy()
    holes[:250] = np.nan
    prof_with_holes = profile_sketch.numeric_profile(holes)
    assert prof_with_holes["missing"] == 0.25 and prof_with_holes["rows"] == 750
    up = drift.numeric_drift(profile, holes)
    assert (up["missing_ref"], up["missing_cur"], up["rows"]) == (0.0, 0.25, 750)
    down = drift.numeric_drift(prof_with_holes, ref[:1000])
    assert (down["missing_ref"], down["missing_cur"], down["rows"]) == (0.25, 0.0, 1000)
    assert profile_sketch.missing_share([]) == 0.0 and profile_sketch.missing_share([np.nan, 1.0]) == 0.5


def test_statistics_of_nothing_are_undefined_not_zero(profile):
    gone = drift.numeric_drift(profile, [np.nan] * 10)
    assert gone["rows"] == 0 and gone["missing_cur"] == 1.0
    assert all(math.isnan(gone[k]) for k in ("ks", "psi", "wasserstein"))
    empty = profile_sketch.numeric_profile([np.nan, np.nan])
    assert empty == {
        "kind": "numeric",
        "rows": 0,
        "missing": 1.0,
        "quantiles": [],
        "psi_edges": [],
        "psi_shares": [],
        "mean": None,
        "std": None,
    }
    against_empty = drift.numeric_drift(empty, [1.0, 2.0])
    assert against_empty["rows"] == 2 and math.isnan(against_empty["ks"])


def test_profile_keeps_quantiles_moments_and_bins(ref, profile):
    assert profile["kind"] == "numeric" and profile["rows"] == len(ref) and profile["missing"] == 0.0
    assert len(profile["quantiles"]) == profile_sketch.LEVELS
    assert profile["quantiles"][0] == ref.min() and profile["quantiles"][-1] == ref.max()
    assert profile["quantiles"][250] == pytest.approx(np.median(ref))
    assert profile["mean"] == pytest.approx(ref.mean()) and profile["std"] == pytest.approx(ref.std())
    assert len(profile["psi_edges"]) == 9 and profile["psi_shares"] == pytest.approx([0.1] * 10, abs=1e-3)
    small = profile_sketch.numeric_profile(np.arange(5.0), levels=5, bins=2)
    assert small["quantiles"] == [0.0, 1.0, 2.0, 3.0, 4.0] and small["psi_edges"] == [2.0]
    assert small["psi_shares"] == pytest.approx([0.6, 0.4])


def test_profile_ks_uses_the_reference_step_function():
    prof = profile_sketch.numeric_profile(np.arange(5.0), levels=5)  # quantiles 0..4 at levels 0, .25, .5, .75, 1
    # current all at 1.5: F_ref(1.5) = 0.25, F_cur jumps to 1 -> D = 0.75; below 0 both are 0
    assert drift.numeric_drift(prof, [1.5] * 4)["ks"] == pytest.approx(0.75)
    assert drift.numeric_drift(prof, [-1.0] * 4)["ks"] == pytest.approx(1.0)
    assert drift.numeric_drift(prof, [10.0] * 4)["ks"] == pytest.approx(1.0)
    # the same five values: off by at most one level step (1 / (levels - 1)), as the module documents
    assert drift.numeric_drift(prof, [0.0, 1.0, 2.0, 3.0, 4.0])["ks"] == pytest.approx(0.2)


def test_psi_uses_the_bins_it_is_given():
    # quartiles of the uniform reference: edges 0.25, 0.5, 0.75; all current values in the top quarter
    cur = np.repeat([0.8, 0.9], 50)
    expected = 3 * (EPS - 0.25) * math.log(EPS / 0.25) + (1 - 0.25) * math.log(1 / 0.25)
    assert drift.psi(UNIFORM, cur, bins=4) == pytest.approx(expected, rel=1e-9)
    assert drift.psi(UNIFORM, cur, bins=4) != pytest.approx(drift.psi(UNIFORM, cur), rel=1e-3)


def test_nothing_to_compare_is_undefined_without_dividing_by_zero():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 on the way to the NaN
        for a, b in (([], [1.0]), ([1.0], []), ([], [])):
            assert math.isnan(drift.ks_statistic(a, b)) and math.isnan(drift.wasserstein(a, b))
        assert math.isnan(drift.categorical_drift(REF, [None, None])["js"])
    assert profile_sketch.numeric_profile([])["missing"] == 0.0 and profile_sketch.numeric_profile([])["rows"] == 0


def test_category_keys_are_the_values_as_given():
    prof = profile_sketch.categorical_profile([1, 2, 2, None])
    assert prof["shares"] == {"2": pytest.approx(2 / 3), "1": pytest.approx(1 / 3)} and prof["missing"] == 0.25
    assert profile_sketch.category_shares([1, 2, 2, None]) == {"2": pytest.approx(2 / 3), "1": pytest.approx(1 / 3)}
