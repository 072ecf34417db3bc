"""The canary decision rests on the confidence interval of the paired log-loss difference, not on its mean.

Two real LightGBM boosters scored on the same labelled flights; the numbers are checked against an
independent computation (SciPy's Bernoulli log-likelihood per flight and standard error, scikit-learn's AUC). The tolerance is then
placed below, inside and above the interval. Written to hold both for today's rule (promote when the upper
bound is within the tolerance, otherwise roll back) and for a rule with a third, 'inconclusive' outcome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from include.mlops.core.frame import FeatureSpec
from include.mlops.deploy.canary import compare, evidence
from include.mlops.deploy.config import DeployConfig
from include.mlops.kinds import lightgbm

SPEC = FeatureSpec(numeric=["temp", "event_hour_utc"], categorical=[])


def _train(X, y, rounds, seed):
    import lightgbm as lgb

    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": seed, "min_data_in_leaf": 20}
    return lgb.train(params, lgb.Dataset(SPEC.encode(X)[SPEC.columns], label=y), num_boost_round=rounds)


def _flights(n, seed):
    rng = np.random.default_rng(seed)
    hours = pd.Timestamp("2013-03-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 24 * 20, n), unit="h")
    temp = rng.normal(0, 1, n)
    y = (temp + 0.3 * hours.hour.to_numpy() / 24 + rng.normal(0, 1.2, n) > 0.6).astype(int)
    return pd.DataFrame(
        {"time_hour": hours, "temp": temp, "label": y, "event_hour_utc": hours.hour, "event_weekday": hours.weekday}
    )


@pytest.fixture(scope="module")
def models():
    train = _flights(4000, 1)
    return lightgbm.Model(_train(train, train["label"], 5, 1), SPEC), lightgbm.Model(
        _train(train, train["label"], 60, 2), SPEC
    )


@pytest.fixture(scope="module")
def canary():
    df = _flights(400, 3).drop(columns=["event_hour_utc", "event_weekday"])
    return df.assign(
        arm=np.where(np.arange(len(df)) % 2, "challenger", "champion"),
        score=np.random.default_rng(4).uniform(0.1, 0.9, len(df)),
    )


def _per_flight_logloss(y, p):
    return -stats.bernoulli.logpmf(y, p)


def test_the_paired_difference_and_its_interval_match_an_independent_computation(models, canary):
    champion, challenger = models
    r = compare(canary, champion, challenger, DeployConfig(bootstrap=50))
    X = canary.assign(event_hour_utc=canary["time_hour"].dt.hour, event_weekday=canary["time_hour"].dt.weekday)
    y = canary["label"].to_numpy()
    p_ch = champion.predict(X)
    p_cl = challenger.predict(X)
    diff = _per_flight_logloss(y, p_cl) - _per_flight_logloss(y, p_ch)
    se = stats.sem(diff)
    assert r["rows"] == len(canary)
    assert r["logloss"]["diff"] == pytest.approx(diff.mean(), abs=1e-9)
    assert r["logloss"]["ci95"] == pytest.approx([diff.mean() - 1.96 * se, diff.mean() + 1.96 * se], abs=1e-9)
    assert r["logloss"]["champion"] == pytest.approx(_per_flight_logloss(y, p_ch).mean(), abs=1e-9)
    assert r["logloss"]["challenger"] == pytest.approx(_per_flight_logloss(y, p_cl).mean(), abs=1e-9)
    from sklearn.metrics import roc_auc_score

    assert r["auc"]["champion"] == pytest.approx(roc_auc_score(y, p_ch), abs=1e-12)
    assert r["auc"]["challenger"] == pytest.approx(roc_auc_score(y, p_cl), abs=1e-12)
    assert r["auc"]["diff"] == pytest.approx(roc_auc_score(y, p_cl) - roc_auc_score(y, p_ch), abs=1e-12)
    lo, hi = r["auc"]["ci95"]
    assert lo <= r["auc"]["diff"] <= hi
    for a in ("champion", "challenger"):
        g = canary[canary["arm"] == a]
        assert r["live_auc_by_arm"][a] == pytest.approx(roc_auc_score(g["label"], g["score"]), abs=1e-12)


def test_the_decision_follows_the_interval_not_the_mean(models, canary):
    """kills: canary decides on the mean log-loss difference and ignores the confidence interval."""
    champion, challenger = models
    base = compare(canary, champion, challenger, DeployConfig(bootstrap=20))
    lo, hi = base["logloss"]["ci95"]
    mean = base["logloss"]["diff"]
    assert lo < mean < hi and hi - lo > 0.01
    # the whole interval within the tolerance, its upper bound exactly on it: promote
    assert (
        compare(canary, champion, challenger, DeployConfig(bootstrap=20, max_logloss_increase=hi))["decision"]
        == "promote"
    )
    # the mean within the tolerance, the interval not: the evidence does not show the challenger is good enough
    straddling = compare(canary, champion, challenger, DeployConfig(bootstrap=20, max_logloss_increase=(mean + hi) / 2))
    assert straddling["decision"] != "promote"
    # the whole interval beyond the tolerance: roll back
    worse = compare(canary, champion, challenger, DeployConfig(bootstrap=20, max_logloss_increase=lo - 1e-6))
    assert worse["decision"] == "rollback"
    assert worse["logloss"]["tolerance"] == lo - 1e-6 and worse["config"]["bootstrap"] == 20


@pytest.mark.parametrize(
    "delayed, on_time", [(150, 200), (2, 10), (10, 2)], ids=["350-flights", "2-delayed-of-12", "2-on-time-of-12"]
)
def test_the_auc_interval_is_a_seeded_bootstrap_over_all_flights(models, canary, delayed, on_time):
    """On 12 flights many resamples hold one class only (or a single flight of one): those with one class are
    skipped, every other one is kept."""
    from sklearn.metrics import roc_auc_score

    champion, challenger = models
    flights = pd.concat([canary[canary["label"] == 1].head(delayed), canary[canary["label"] == 0].head(on_time)])
    cfg = DeployConfig(bootstrap=40)
    first, again = compare(flights, champion, challenger, cfg), compare(flights, champion, challenger, cfg)
    assert first["auc"]["ci95"] == again["auc"]["ci95"]  # the same evidence, the same interval
    # the interval, resampled here: all n flights with replacement, seeded by `seed` (0)
    X = flights.assign(event_hour_utc=flights["time_hour"].dt.hour, event_weekday=flights["time_hour"].dt.weekday)
    y = flights["label"].to_numpy()
    assert y.sum() == delayed and len(y) == delayed + on_time
    p_ch = champion.predict(X)
    p_cl = challenger.predict(X)
    rng, diffs = np.random.default_rng(0), []
    for _ in range(40):
        i = rng.integers(0, len(y), len(y))
        if len(set(y[i])) == 2:
            diffs.append(roc_auc_score(y[i], p_cl[i]) - roc_auc_score(y[i], p_ch[i]))
    assert 10 < len(diffs) <= 40 and all(np.isfinite(diffs))
    assert first["auc"]["ci95"] == pytest.approx([np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)], abs=1e-12)


def test_no_bootstrap_no_auc_interval(models, canary):
    champion, challenger = models
    assert compare(canary, champion, challenger, DeployConfig(bootstrap=0))["auc"]["ci95"] is None


def test_an_arm_with_a_single_delayed_flight_still_has_a_live_auc(models, canary):
    champion, challenger = models
    one = canary.copy()
    arm = one["arm"] == "challenger"
    one.loc[arm, "label"] = 0
    one.loc[one.index[arm][0], "label"] = 1
    live = compare(one, champion, challenger, DeployConfig(bootstrap=5))["live_auc_by_arm"]
    assert 0.0 <= live["challenger"] <= 1.0
    none = one.assign(label=np.where(one["arm"] == "challenger", 0, one["label"]))
    assert np.isnan(compare(none, champion, challenger, DeployConfig(bootstrap=5))["live_auc_by_arm"]["challenger"])


def test_evidence_is_ready_on_enough_labelled_flights_in_all(canary):
    cfg = DeployConfig(min_labelled=400, max_labelled=1000, min_days=2)
    canary = canary.assign(date=canary["time_hour"].dt.date.astype(str))  # as the prediction log's join gives it
    days = canary["date"].nunique()
    assert days >= 2
    assert evidence(canary, cfg) == {
        "labelled": 400,
        "days": days,
        "by_arm": {"champion": 200, "challenger": 200},
        "ready": True,
        "enough": False,
    }
    assert evidence(canary.iloc[1:], cfg)["ready"] is False
    only_champion = canary[canary["arm"] == "champion"]
    assert evidence(only_champion, cfg.replace(min_labelled=200))["ready"] is True
    one_day = canary[canary["date"] == canary["date"].iloc[0]]
    assert evidence(one_day, cfg.replace(min_labelled=1))["ready"] is False  # min_days
    assert evidence(canary.iloc[0:0], cfg) == {
        "labelled": 0,
        "days": 0,
        "by_arm": {"champion": 0, "challenger": 0},
        "ready": False,
        "enough": False,
    }
