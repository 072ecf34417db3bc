"""Drift statistics against SciPy and textbook values on known distributions."""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from include.mlops.core import profile as profile_sketch
from include.mlops.monitor import drift


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_identical_samples_give_zero(rng):
    x = rng.normal(size=5000)
    assert drift.ks_statistic(x, x) == 0.0
    assert drift.psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert drift.wasserstein(x, x) == 0.0
    prof = profile_sketch.numeric_profile(x)
    got = drift.numeric_drift(prof, x)
    assert got["ks"] <= 1 / (profile_sketch.LEVELS - 1) + 1e-9
    assert got["psi"] == pytest.approx(0.0, abs=1e-12)
    assert got["wasserstein"] < 0.01
    shares = profile_sketch.category_shares(["a", "b", "b", "c"])
    assert drift.categorical_drift(shares, ["a", "b", "b", "c"]) == {
        "psi": 0.0,
        "js": 0.0,
        "kl": 0.0,
        "unseen_share": 0.0,
    }


def test_shifted_normal_matches_scipy_and_theory(rng):
    ref, cur = rng.normal(0, 1, 20000), rng.normal(0.5, 1, 20000)
    d = drift.ks_statistic(ref, cur)
    assert d == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    # population D between N(0,1) and N(0.5,1) is 2 * Phi(0.25) - 1 = 0.1974
    assert d == pytest.approx(2 * stats.norm.cdf(0.25) - 1, abs=0.015)
    w = drift.wasserstein(ref, cur)
    assert w == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-9)
    assert w == pytest.approx(0.5, abs=0.03)  # W1 of a location shift is the shift, in units of sigma
    assert drift.wasserstein(ref, cur, normed=False) == pytest.approx(stats.wasserstein_distance(ref, cur))


def test_profile_statistics_agree_with_exact_ones(rng):
    ref = rng.gamma(2.0, 3.0, 30000)
    prof = profile_sketch.numeric_profile(ref)
    for cur in (rng.gamma(2.0, 3.0, 5000), rng.gamma(2.5, 3.0, 5000), rng.gamma(2.0, 3.0, 5000) + 4):
        got = drift.numeric_drift(prof, cur)
        assert got["ks"] == pytest.approx(drift.ks_statistic(ref, cur), abs=0.005)
        assert got["psi"] == pytest.approx(drift.psi(ref, cur), rel=1e-9)
        assert got["wasserstein"] == pytest.approx(drift.wasserstein(ref, cur), rel=0.05, abs=0.005)


def test_profile_wasserstein_is_not_fooled_by_a_heavy_tail(rng):
    ref, cur = rng.pareto(1.5, 200000) + 1, rng.pareto(1.5, 200000) + 1  # same distribution, huge outliers
    got = drift.numeric_drift(profile_sketch.numeric_profile(ref), cur)
    assert drift.wasserstein(ref, cur) < 0.05 and got["wasserstein"] < 0.05  # far below the 0.1 threshold


def test_discrete_feature_profile(rng):
    ref = rng.integers(0, 24, 20000).astype(float)
    cur = np.concatenate([rng.integers(0, 24, 8000), rng.integers(18, 24, 2000)]).astype(float)
    got = drift.numeric_drift(profile_sketch.numeric_profile(ref), cur)
    assert got["ks"] == pytest.approx(drift.ks_statistic(ref, cur), abs=0.005)
    assert got["ks"] == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=0.005)


def test_psi_hand_computed():
    r, c = [0.25, 0.25, 0.25, 0.25], [0.10, 0.20, 0.30, 0.40]
    expected = sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c))
    assert drift.psi_from_shares(r, c) == pytest.approx(expected)
    assert expected == pytest.approx(0.2282, abs=1e-4)
    # deciles of a uniform reference: a current sample that fills only the top half
    ref = np.linspace(0, 1, 100001)
    cur = np.linspace(0.5, 1, 50001)
    top_half = [drift.EPS] * 5 + [0.2] * 5
    assert drift.psi(ref, cur) == pytest.approx(drift.psi_from_shares([0.1] * 10, top_half), rel=1e-3)


def test_categorical_js_and_unseen():
    ref = profile_sketch.category_shares(["JFK"] * 50 + ["LGA"] * 30 + ["EWR"] * 20)
    got = drift.categorical_drift(ref, ["JFK"] * 40 + ["LGA"] * 30 + ["EWR"] * 10 + ["XXX"] * 20)
    assert got["unseen_share"] == pytest.approx(0.2)
    keys = ["EWR", "JFK", "LGA", profile_sketch.UNSEEN]
    p, q = [0.2, 0.5, 0.3, 0.0], [0.1, 0.4, 0.3, 0.2]
    assert sorted(ref) + [profile_sketch.UNSEEN] == keys
    assert got["js"] == pytest.approx(jensenshannon(p, q), rel=1e-9)
    assert got["psi"] == pytest.approx(drift.psi_from_shares(p, q))
    assert got["psi"] > 0.25  # a fifth of the flights from an airport never seen in training


def test_missing_values_are_their_own_signal(rng):
    ref = rng.normal(size=1000)
    cur = rng.normal(size=1000)
    cur[:300] = np.nan
    prof = profile_sketch.numeric_profile(ref)
    got = drift.numeric_drift(prof, cur)
    assert prof["missing"] == 0.0 and got["missing_cur"] == pytest.approx(0.3)
    assert got["ks"] < 0.1  # the values that are there did not move


def _smoothed(shares):
    """KL's smoothing (drift.py): every share clipped at EPS (1e-4), then renormalised to sum to 1."""
    s = np.clip(np.asarray(shares, dtype="float64"), drift.EPS, None)
    return s / s.sum()


def test_kl_matches_scipy_entropy_on_the_psi_bins(rng):
    ref = rng.gamma(2.0, 3.0, 30000)
    prof = profile_sketch.numeric_profile(ref)
    edges = profile_sketch.psi_edges(ref)
    r = profile_sketch.bin_shares(ref, edges)
    # shifted up: the lowest bins empty in the current sample (0 * ln 0 = 0 without smoothing, EPS terms with it)
    for cur in (rng.gamma(2.0, 3.0, 5000), rng.gamma(2.5, 3.0, 5000), rng.gamma(2.0, 3.0, 5000) + 4):
        c = profile_sketch.bin_shares(cur, edges)
        expected = stats.entropy(_smoothed(c), _smoothed(r))  # KL(current || reference), natural log
        assert drift.kl_divergence(r, c) == pytest.approx(expected, rel=1e-12)
        assert drift.numeric_drift(prof, cur)["kl"] == pytest.approx(expected, rel=1e-9)
    assert (c == 0).any() and math.isfinite(drift.kl_divergence(r, c))  # the last one had empty bins
    assert drift.numeric_drift(prof, ref)["kl"] == pytest.approx(0.0, abs=1e-12)


def test_kl_is_current_against_reference_not_the_reverse():
    r, c = [0.5, 0.5], [0.9, 0.1]
    assert drift.kl_divergence(r, c) == pytest.approx(0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5))
    assert drift.kl_divergence(r, c) == pytest.approx(stats.entropy(c, r))
    assert drift.kl_divergence(r, c) != pytest.approx(stats.entropy(r, c))  # KL is not symmetric


def test_categorical_kl_matches_scipy_entropy_and_stays_finite_on_unseen_categories():
    ref = profile_sketch.category_shares(["JFK"] * 50 + ["LGA"] * 30 + ["EWR"] * 20)
    got = drift.categorical_drift(ref, ["JFK"] * 40 + ["LGA"] * 30 + ["EWR"] * 10 + ["XXX"] * 20)
    p, q = [0.2, 0.5, 0.3, 0.0], [0.1, 0.4, 0.3, 0.2]  # EWR, JFK, LGA, UNSEEN: reference, current
    assert stats.entropy(q, p) == math.inf  # unsmoothed, a category the reference never saw is infinite
    assert got["kl"] == pytest.approx(stats.entropy(_smoothed(q), _smoothed(p)), rel=1e-12)
    assert 1.0 < got["kl"] < 2.0  # finite, and large: dominated by 0.2 ln(0.2 / 1e-4)


def test_the_drift_benchmark_times_kl_and_its_profile_side_runs(tmp_path):
    """bench/bench_drift.py's own sides on a small table: the full set has KL per feature (the same value as
    monitoring's ``kl``) and its seconds; the profile side (the production path) runs."""
    import importlib.util

    import pandas as pd

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_drift.py"
    spec_ = importlib.util.spec_from_file_location("bench_drift", path)
    bench = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(bench)
    spec = bench.generate(tmp_path, 2000, 5, 0)
    ref, cur = pd.read_parquet(tmp_path / "reference.parquet"), pd.read_parquet(tmp_path / "current.parquet")
    seconds: dict = {}
    full = bench.ours_evidently_rules(ref, cur, spec, full=True, seconds=seconds)
    assert set(seconds) == {"ks", "psi", "wasserstein", "kl", "categorical"} and all(v >= 0 for v in seconds.values())
    for col in spec["numeric"]:
        r, c = bench._floats(ref[col]), bench._floats(cur[col])
        edges = profile_sketch.psi_edges(r)
        rs, cs = profile_sketch.bin_shares(r, edges), profile_sketch.bin_shares(c, edges)
        assert full[col]["kl"] == pytest.approx(stats.entropy(_smoothed(cs), _smoothed(rs)), rel=1e-9)
    for col in spec["categorical"]:
        assert math.isfinite(full[col]["kl"])
    prof = bench.ours_profile(ref, spec)
    against = bench.ours_against_profile(prof, cur, spec)
    assert set(against) == set(full) and all("kl" in v for v in against.values())
