"""The canary's decision: promote, roll back or wait, on the paired log-loss difference and its 95 % interval.

Kills: the canary deciding on the mean log-loss difference and ignoring the confidence interval; the default
tolerance never used; an inconclusive interval read as a decision."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from include.mlops.deploy.canary import compare, evidence, verdict
from include.mlops.deploy.config import DeployConfig

RNG = np.random.default_rng(3)


class Fixed:
    """A model that returns given scores: compare() then scores exactly what the test chose."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def predict(self, raw):
        return self.scores[: len(raw)]


def frame(n, days=1):
    return pd.DataFrame(
        {
            "date": [f"2013-03-{1 + i % days:02d}" for i in range(n)],
            "time_hour": pd.Timestamp("2013-03-01T12:00:00Z"),
            "arm": np.where(np.arange(n) % 2, "challenger", "champion"),
            "score": 0.5,
            "label": RNG.integers(0, 2, n),
        }
    )


def logloss(y, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def oracle_ci(y, p_champion, p_challenger):
    """The paired difference's mean and 95 % interval, computed here independently of the code."""
    d = logloss(y, p_challenger) - logloss(y, p_champion)
    m = sum(d) / len(d)
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1))
    return m, (m - 1.96 * sd / math.sqrt(len(d)), m + 1.96 * sd / math.sqrt(len(d)))


def run(df, p_champion, p_challenger, cfg):
    return compare(df, Fixed(p_champion), Fixed(p_challenger), cfg, seed=0)


@pytest.mark.parametrize("shift, expected", [(-0.15, "promote"), (+0.15, "rollback")])
def test_a_clearly_better_or_worse_challenger(shift, expected):
    df = frame(2000)
    y = df["label"].to_numpy()
    champ = np.clip(0.5 + 0.1 * (2 * y - 1) + RNG.normal(0, 0.05, len(y)), 0.01, 0.99)
    chall = np.clip(champ - shift * (2 * y - 1), 0.01, 0.99)
    r = run(df, champ, chall, DeployConfig(max_logloss_increase=0.005))
    mean, ci = oracle_ci(y, champ, chall)
    assert r["logloss"]["diff"] == pytest.approx(mean) and r["logloss"]["ci95"] == pytest.approx(list(ci))
    assert r["decision"] == expected


def test_the_interval_decides_not_the_mean():
    """Mean difference inside the tolerance, but the interval reaches beyond it: not a promotion."""
    df = frame(200)
    y = df["label"].to_numpy()
    champ = np.full(len(y), 0.5)
    noise = RNG.normal(0, 0.2, len(y))
    chall = np.clip(0.5 + noise, 0.05, 0.95)
    mean, (lo, hi) = oracle_ci(y, champ, chall)
    tol = mean + (hi - mean) / 2  # the mean is within the tolerance, the upper end is not
    assert mean <= tol < hi and lo <= tol
    r = run(df, champ, chall, DeployConfig(max_logloss_increase=tol))
    assert r["decision"] == "inconclusive"


def test_verdict_at_the_edges():
    assert verdict([-0.02, 0.005], 0.005) == "promote"  # upper end exactly at the tolerance
    assert verdict([0.0051, 0.02], 0.005) == "rollback"  # lower end just beyond it
    assert verdict([0.005, 0.02], 0.005) == "inconclusive"  # lower end at the tolerance: not shown worse
    assert verdict([-0.01, 0.01], 0.005) == "inconclusive"
    assert verdict([float("nan"), float("nan")], 0.005) == "inconclusive"  # one flight: no interval, no decision


def test_evidence_counts_every_labelled_flight_whichever_arm_served_it():
    """Both versions score every labelled flight (a paired comparison): a verdict needs min_labelled flights in
    all, not per arm; the cap is max_labelled."""
    cfg = DeployConfig(min_labelled=100, max_labelled=1000, min_days=2)
    one_arm = frame(100, days=2).assign(arm="champion")  # the shadow stage: the champion served them all
    ev = evidence(one_arm, cfg)
    assert ev["labelled"] == 100 and ev["by_arm"] == {"champion": 100, "challenger": 0} and ev["ready"]
    assert ev["days"] == 2 and not evidence(frame(5000, days=1), cfg)["ready"]  # one day is never enough
    assert not evidence(frame(99, days=2), cfg)["ready"]
    assert evidence(frame(1000), cfg)["enough"] and not evidence(frame(999), cfg)["enough"]


def test_the_interval_counts_a_day_as_one_cluster():
    """Flights of one day share its weather: when whole days move together, the interval widens to the days'
    spread (the flights' own standard error would call a two-day fluke conclusive)."""
    from include.mlops.deploy.canary import day_clustered_se

    rng = np.random.default_rng(0)
    dates = np.repeat(["2013-03-01", "2013-03-02", "2013-03-03", "2013-03-04"], 500)
    diff = np.repeat([-0.1, 0.1, -0.08, 0.09], 500) + rng.normal(0, 0.01, 2000)
    clustered = day_clustered_se(diff, dates)
    sums = pd.Series(diff - diff.mean()).groupby(dates).sum().to_numpy()  # CR1, computed here independently
    assert clustered == pytest.approx(math.sqrt(4 / 3 * (sums**2).sum()) / 2000)
    assert clustered > 5 * diff.std(ddof=1) / math.sqrt(2000)
    assert day_clustered_se(diff, np.full(2000, "2013-03-01")) is None  # one day: no clusters to weigh


def test_a_one_day_fluke_is_inconclusive_not_promoted():
    """Kills: the flights' standard error alone. Two days whose differences point opposite ways: the flights
    say 'promote' on the mean, the days say nothing is known."""
    df = frame(2000, days=2)
    y = df["label"].to_numpy()
    day1 = (df["date"] == "2013-03-01").to_numpy()
    champ = np.where(y == 1, 0.45, 0.55)
    chall = np.where(day1, np.where(y == 1, 0.7, 0.3), np.where(y == 1, 0.42, 0.58))
    cfg = DeployConfig(bootstrap=0)
    iid_only = compare(df.drop(columns="date"), Fixed(champ), Fixed(chall), cfg)
    assert iid_only["decision"] == "promote"
    both = compare(df, Fixed(champ), Fixed(chall), cfg)
    assert both["decision"] == "inconclusive" and both["days"] == 2, both["logloss"]


def test_the_shipped_tolerance_is_the_one_used():
    """Kills: the default tolerance never used. deploy.yaml's value decides a case on its edge."""
    cfg = DeployConfig.load()
    assert cfg.max_logloss_increase == 0.005 and cfg.max_labelled > cfg.min_labelled
    df = frame(400)
    y = df["label"].to_numpy()
    champ = np.full(len(y), 0.4)
    # every flight 0.004 worse on log-loss for the challenger: within 0.005, with zero variance
    target = logloss(y, champ) + 0.004
    chall = np.where(y == 1, np.exp(-target), 1 - np.exp(-target))
    r = run(df, champ, chall, cfg)
    assert r["logloss"]["ci95"][1] == pytest.approx(0.004, abs=1e-6)
    assert r["decision"] == "promote" and r["logloss"]["tolerance"] == 0.005
    r = run(df, champ, chall, DeployConfig.load(overrides={"max_logloss_increase": 0.003}))
    assert r["decision"] == "rollback"


def sliced(n_per_day: int = 600, days: int = 4) -> pd.DataFrame:
    """Flights of three origins over some days, every one labelled 1."""
    n = n_per_day * days
    return pd.DataFrame(
        {
            "date": [f"2013-03-{1 + i // n_per_day:02d}" for i in range(n)],
            "origin": np.array(["EWR", "JFK", "LGA"])[np.arange(n) % 3],
            "carrier": "UA",
            "time_hour": pd.Timestamp("2013-03-01T12:00:00Z"),
            "arm": "champion",
            "score": 0.5,
            "label": 1,
        }
    )


def test_a_harm_on_one_slice_is_found_though_the_whole_is_fine():
    """The challenger is much better on JFK and LGA and much worse on EWR: over every flight it would be promoted,
    but the EWR slice is harmed (its interval beyond the slice tolerance); the carrier slice (every flight) is
    not."""
    df = sliced()
    ewr = (df["origin"] == "EWR").to_numpy()
    champ = np.where(ewr, 0.6, 0.5)
    chall = np.where(ewr, 0.5, 0.7) + RNG.normal(0, 0.005, len(df))
    r = compare(df, Fixed(champ), Fixed(chall), DeployConfig(bootstrap=0), slices=("origin", "carrier"))
    assert r["decision"] == "promote", r["logloss"]
    s = r["slices"]
    assert s["harmed"] == ["origin=EWR"] and s["judged"] == 4, s
    assert s["table"][0]["value"] == "EWR" and s["table"][0]["ci"][0] > 0.02
    assert s["table"][0]["ci95"][0] > s["table"][0]["ci"][0]  # its own interval, narrower than the family's
    assert s["z"] == pytest.approx(2.498, abs=1e-3)  # 95 % over the four slices judged together


def test_small_slices_are_reported_not_judged():
    df = sliced(n_per_day=60)  # 80 flights an origin
    ewr = (df["origin"] == "EWR").to_numpy()
    r = compare(
        df, Fixed(np.full(len(df), 0.6)), Fixed(np.where(ewr, 0.3, 0.6)), DeployConfig(bootstrap=0), slices=("origin",)
    )
    s = r["slices"]
    assert s["judged"] == 0 and s["harmed"] == [] and {t["value"] for t in s["table"]} == {"EWR", "JFK", "LGA"}
    assert all("ci" not in t for t in s["table"])


def test_no_slice_columns_no_slices():
    df = sliced(n_per_day=100, days=2)
    r = compare(df, Fixed(np.full(len(df), 0.6)), Fixed(np.full(len(df), 0.6)), DeployConfig(bootstrap=0))
    assert r["slices"]["judged"] == 0 and r["slices"]["table"] == []
