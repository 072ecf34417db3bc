"""Every monitoring signal shown to fire and to stay quiet: data drift (per feature, and the number of
drifted features), missing share, label rate, prediction drift, decay; and the firing rule's messages.

Real 2013 days (curated straight from the simulator's tables), a reference profile built from them the way
training builds it, and prediction logs written where the service writes them.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from curation import write_curated

from include.mlops.core import frame, layout, schema
from include.mlops.core import profile as P
from include.mlops.core import profile as profile_sketch
from include.mlops.core.jsonsafe import json_safe
from include.mlops.core.lake import Lake
from include.mlops.monitor import monitor
from include.mlops.monitor.config import MonitorConfig
from include.mlops.monitor.monitor import feature_drift

JANUARY = ["2013-01-02", "2013-01-03"]
JULY = ["2013-07-02", "2013-07-03"]


# ------------------------------------------------------------------------------ one feature at a time
def _numeric(ref_values, name="x"):
    return {"features": {name: profile_sketch.numeric_profile(np.asarray(ref_values, dtype=float))}}


QUIET = MonitorConfig(numeric={"ks": 0.5, "psi": None, "wasserstein": None}, missing_increase=0.10)


def test_a_numeric_feature_drifts_up_and_down_and_stays_quiet_when_unchanged():
    rng = np.random.default_rng(3)
    prof = _numeric(rng.normal(0, 1, 5000))
    for shift in (-2.0, 2.0):
        [row] = feature_drift(prof, pd.DataFrame({"x": rng.normal(shift, 1, 2000)}), QUIET)
        assert row["drifted"] and row["reasons"][0].startswith(f"KS D {row['ks']:.3f} >= 0.5")
    [row] = feature_drift(prof, pd.DataFrame({"x": rng.normal(0, 1, 2000)}), QUIET)
    assert not row["drifted"] and row["reasons"] == [] and row["kind"] == "numeric" and row["feature"] == "x"


def test_each_statistic_can_be_the_one_that_fires():
    rng = np.random.default_rng(4)
    prof = _numeric(rng.normal(0, 1, 5000))
    cur = pd.DataFrame({"x": rng.normal(0.3, 1, 5000)})  # KS about 0.12, PSI about 0.09, W about 0.3
    off = {"ks": None, "psi": None, "wasserstein": None}
    assert feature_drift(prof, cur, QUIET.replace(numeric=off))[0]["reasons"] == []
    for stat, label in (("ks", "KS D"), ("psi", "PSI"), ("wasserstein", "normed Wasserstein")):
        [row] = feature_drift(prof, cur, QUIET.replace(numeric=off | {stat: 0.05}))
        assert row["reasons"] == [f"{label} {row[stat]:.3f} >= 0.05"], stat
        [quiet] = feature_drift(prof, cur, QUIET.replace(numeric=off | {stat: row[stat] * 1.01}))
        assert quiet["reasons"] == [], stat
        # a threshold equal to the value fires (>=)
        assert feature_drift(prof, cur, QUIET.replace(numeric=off | {stat: row[stat]}))[0]["drifted"], stat


def test_per_feature_thresholds_override_the_defaults():
    rng = np.random.default_rng(5)
    prof = _numeric(rng.normal(0, 1, 5000), "temp")  # overrides name a feature of the model
    cur = pd.DataFrame({"temp": rng.normal(2, 1, 2000)})
    assert feature_drift(prof, cur, QUIET)[0]["drifted"]
    lenient = QUIET.replace(features={"temp": {"ks": 0.99}})
    assert not feature_drift(prof, cur, lenient)[0]["drifted"]
    assert QUIET.replace(features={"temp": {"ks": 0.99}}).thresholds("temp", "numeric") == {
        "ks": 0.99,
        "psi": None,
        "wasserstein": None,
    }
    assert QUIET.thresholds("y", "categorical") == {"psi": 0.25, "js": 0.15, "kl": None}


def test_a_missing_share_increase_fires_and_a_decrease_does_not():
    """kills: missing-share drift reason dropped."""
    rng = np.random.default_rng(6)
    values = rng.normal(0, 1, 1000)
    prof = _numeric(values)
    holes = values.copy()
    holes[:300] = np.nan  # the values that are there did not move
    [row] = feature_drift(prof, pd.DataFrame({"x": holes}), QUIET)
    assert row["ks"] < 0.1 and row["drifted"]
    assert row["reasons"] == ["missing share 30.0% (reference 0.0%)"]
    # exactly the configured increase fires; just under it does not
    at = values.copy()
    at[:100] = np.nan
    assert feature_drift(prof, pd.DataFrame({"x": at}), QUIET)[0]["reasons"] == ["missing share 10.0% (reference 0.0%)"]
    under = values.copy()
    under[:99] = np.nan
    assert not feature_drift(prof, pd.DataFrame({"x": under}), QUIET)[0]["drifted"]
    # fewer missing values than the reference is no drift
    [fewer] = feature_drift(_numeric(holes), pd.DataFrame({"x": values}), QUIET)
    assert (fewer["missing_ref"], fewer["missing_cur"]) == (0.3, 0.0) and not fewer["drifted"]


def test_a_categorical_feature_drifts_on_gained_lost_or_missing_categories():
    ref = ["EWR"] * 40 + ["JFK"] * 35 + ["LGA"] * 25
    prof = {"features": {"origin": profile_sketch.categorical_profile(ref)}}
    same = feature_drift(prof, pd.DataFrame({"origin": ref}), QUIET)[0]
    assert not same["drifted"] and same["kind"] == "categorical" and same["missing_cur"] == 0.0
    gained = feature_drift(prof, pd.DataFrame({"origin": ref[:70] + ["BOS"] * 30}), QUIET)[0]
    assert gained["drifted"] and gained["unseen_share"] == pytest.approx(0.3)
    assert any(r.startswith("PSI ") for r in gained["reasons"])
    lost = feature_drift(prof, pd.DataFrame({"origin": ["EWR"] * 60 + ["JFK"] * 40}), QUIET)[0]
    assert lost["drifted"] and lost["unseen_share"] == 0.0
    assert any(r.startswith("Jensen-Shannon ") for r in lost["reasons"])
    missing = feature_drift(prof, pd.DataFrame({"origin": ref[:80] + [None] * 20}), QUIET)[0]
    assert missing["missing_cur"] == pytest.approx(0.2) and missing["missing_ref"] == 0.0
    assert "missing share 20.0% (reference 0.0%)" in missing["reasons"]


def test_ignored_and_absent_features_are_not_judged():
    rng = np.random.default_rng(7)
    prof = {
        "features": {
            "month": profile_sketch.numeric_profile(rng.normal(0, 1, 100)),
            "x": profile_sketch.numeric_profile(rng.normal(0, 1, 100)),
            "gone": profile_sketch.numeric_profile(rng.normal(0, 1, 100)),
        }
    }
    cur = pd.DataFrame({"month": rng.normal(9, 1, 100), "x": rng.normal(9, 1, 100)})
    rows = feature_drift(prof, cur, QUIET)
    assert [r["feature"] for r in rows] == ["x"]  # month: ignored by default; gone: absent
    assert [r["feature"] for r in feature_drift(prof, cur, QUIET.replace(ignore=()))] == ["month", "x"]


def test_a_statistic_that_is_undefined_never_fires():
    prof = _numeric([1.0, 2.0, 3.0])
    [row] = feature_drift(prof, pd.DataFrame({"x": [np.nan, np.nan]}), QUIET.replace(missing_increase=2.0))
    assert row["rows"] == 0 and row["reasons"] == [] and not row["drifted"]


# ------------------------------------------------------------------------------------ the daily report
@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    lake = Lake(tmp_path_factory.mktemp("signals").as_uri())
    write_curated(lake, JANUARY + JULY)
    return lake


@pytest.fixture(scope="module")
def reference(lake):
    fl, we, used = frame.load_window(lake, JANUARY[-1], 2)
    prof = P.build(
        frame.join_sources(fl[fl["is_labelled"]], we),
        schema.features().numeric,
        schema.features().categorical,
        [d.isoformat() for d in used],
    )
    scores = np.random.default_rng(8).uniform(0.0, 0.4, 3000)
    return prof | {"score": profile_sketch.numeric_profile(scores), "validation": {"auc": 0.75}}


def labelled(lake, date):
    cur = lake.read_parquet(layout.partition("curated", "flights", date), "part-00000.parquet")
    cur = cur[cur["is_labelled"]]
    return schema.row_key(cur).to_numpy(), cur["label"].astype(int).to_numpy()


def log_predictions(lake, date, scores_of, version="1"):
    """The service's prediction log for ``date``: one row per labelled flight, score = scores_of(labels)."""
    keys, y = labelled(lake, date)
    folder = f"predictions/date={date}"
    for f in lake.ls(folder):
        lake.rm(folder, f)
    lake.write_parquet(
        pd.DataFrame(
            {
                "flight_key": keys,
                "arm": "champion",
                "version": version,
                "score": scores_of(y),
                "predicted_at": "2026-01-01T00:00:00+00:00",
            }
        ),
        folder,
        "part-0.parquet",
    )


def the_same_scores(y):
    return np.random.default_rng(9).uniform(0.0, 0.4, len(y))


def knowing(y):  # AUC 1 with scores from the reference's range
    return np.where(y == 1, 0.35, 0.05)


def backwards(y):  # AUC 0
    return np.where(y == 1, 0.05, 0.35)


ONLY_TEMP = MonitorConfig(
    window_days=2,
    numeric={"ks": None, "psi": None, "wasserstein": None},
    categorical={"psi": None, "js": None},
    features={"temp": {"ks": 0.5}},
    missing_increase=1.0,
    min_labelled=100,
)


def test_data_drift_needs_min_drifted_features(lake, reference):
    july = monitor.report(lake, JULY[-1], {"version": "1"}, reference, ONLY_TEMP)
    assert july["drifted"] == ["temp"] and not july["signals"]["data_drift"]  # one feature, two needed
    one = monitor.report(lake, JULY[-1], {"version": "1"}, reference, ONLY_TEMP.replace(min_drifted_features=1))
    assert one["signals"]["data_drift"]
    january = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, ONLY_TEMP.replace(min_drifted_features=1))
    assert january["drifted"] == [] and not january["signals"]["data_drift"]
    assert january["window"] == JANUARY and january["days"] == 2 and january["champion"] == "1"


def test_the_label_rate_signal_fires_both_ways_only_when_configured(lake, reference):
    cfg = ONLY_TEMP.replace(min_drifted_features=99)
    base = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, cfg)
    rate = base["label_rate"]["current"]
    assert base["label_rate"]["reference"] == reference["label_rate"]
    assert not base["label_rate"]["drifted"] and not base["signals"]["data_drift"]  # not configured
    on = cfg.replace(label_rate_change=0.05)
    for delta in (-0.08, 0.08):  # the delay rate went up, then down, by 8 points against the reference
        r = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference | {"label_rate": rate - delta}, on)
        assert r["label_rate"]["change"] == pytest.approx(delta)
        assert r["label_rate"]["drifted"] and r["signals"]["data_drift"], delta
    calm = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference | {"label_rate": rate - 0.04}, on)
    assert not calm["label_rate"]["drifted"] and not calm["signals"]["data_drift"]


def test_prediction_drift_fires_on_moved_scores_and_stays_quiet_on_the_same(lake, reference):
    cfg = ONLY_TEMP.replace(min_drifted_features=99)
    for d in JANUARY:
        log_predictions(lake, d, the_same_scores)
    same = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, cfg)
    assert same["prediction"]["rows"] > 500 and not same["prediction"]["drifted"]
    assert not same["signals"]["prediction_drift"] and same["prediction"]["psi"] < 0.25
    for moved in (lambda y: the_same_scores(y) + 0.5, lambda y: the_same_scores(y) * 0.25):  # up, narrower
        for d in JANUARY:
            log_predictions(lake, d, moved)
        r = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, cfg)
        assert r["prediction"]["drifted"] and r["signals"]["prediction_drift"]
        assert r["prediction"]["reasons"][0].startswith("PSI ") and r["prediction"]["psi"] >= 0.25
        assert r["prediction"]["mean_score"] == pytest.approx(
            float(np.mean(np.concatenate([moved(labelled(lake, d)[1]) for d in JANUARY])))
        )
    # another version's predictions are not the champion's
    assert monitor.report(lake, JANUARY[-1], {"version": "2"}, reference, cfg)["prediction"] == {
        "rows": 0,
        "drifted": False,
    }


def test_decay_fires_when_live_auc_drops_and_enough_outcomes_are_in(lake, reference):
    """kills: decay signal never raised."""
    cfg = ONLY_TEMP.replace(min_drifted_features=99, max_auc_drop=0.05)
    for d in JANUARY:
        log_predictions(lake, d, backwards)
    r = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, cfg)
    perf = r["performance"]
    assert perf["window"]["auc"] == pytest.approx(0.0) and perf["reference_auc"] == 0.75
    assert perf["auc_drop"] == pytest.approx(0.75) and perf["judged"] and perf["decayed"]
    assert r["signals"]["decay"] and [d["date"] for d in perf["daily"]] == JANUARY
    # too few outcomes to judge: no decay, however bad
    few = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, cfg.replace(min_labelled=10**6))
    assert not few["performance"]["judged"] and not few["signals"]["decay"]
    # a model that still ranks well has not decayed
    for d in JANUARY:
        log_predictions(lake, d, knowing)
    ok = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, cfg)
    assert ok["performance"]["window"]["auc"] == pytest.approx(1.0) and not ok["signals"]["decay"]
    # a drop of exactly max_auc_drop counts as decay (0.0625: exact in binary, so the boundary is exact)
    at = monitor.report(
        lake,
        JANUARY[-1],
        {"version": "1"},
        reference | {"validation": {"auc": 1.0625}},
        cfg.replace(max_auc_drop=0.0625),
    )
    assert at["performance"]["auc_drop"] == 0.0625 and at["signals"]["decay"] is True
    under = monitor.report(
        lake,
        JANUARY[-1],
        {"version": "1"},
        reference | {"validation": {"auc": 1.0625}},
        cfg.replace(max_auc_drop=0.0626),
    )
    assert under["signals"]["decay"] is False
    # no validation AUC to compare with: nothing to judge
    none = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference | {"validation": None}, cfg)
    assert none["performance"]["reference_auc"] is None and not none["signals"]["decay"]


def test_the_report_is_written_and_latest_only_moves_forward(lake, reference):
    cfg = ONLY_TEMP.replace(min_drifted_features=1)
    r = monitor.report(lake, JULY[-1], {"version": "1"}, reference, cfg)
    folder = f"reports/monitoring/date={JULY[-1]}"
    assert lake.read_json(folder, "report.json") == r and r["report"] == lake.uri(folder, "report.html")
    latest = lake.read_json("reports/monitoring", "latest.json")
    assert latest == {
        "date": JULY[-1],
        "window": JULY,
        "champion": "1",
        "drifted": ["temp"],
        "signals": r["signals"],
        "report": r["report"],
        "fired": False,
        "service": {"status": "not checked", "signals": None, "reasons": None},  # no check in this run
    }
    monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, cfg)  # an older day, rerun later
    assert lake.read_json("reports/monitoring", "latest.json")["date"] == JULY[-1]


# ------------------------------------------------------------------------------- the firing rule's output
def _write(lake, date, signals, **extra):
    lake.write_json(
        {
            "date": date,
            "champion": "3",
            "drifted": ["temp", "dewp"],
            "features": [
                {"feature": "dewp", "drifted": True, "ks": 0.55, "reasons": ["KS D 0.550 >= 0.5"]},
                {"feature": "wind", "drifted": False, "ks": 0.9, "reasons": []},
                {"feature": "temp", "drifted": True, "ks": 0.7, "reasons": ["KS D 0.700 >= 0.5"]},
            ],
            "signals": {
                "data_drift": "data" in signals,
                "prediction_drift": "pred" in signals,
                "decay": "decay" in signals,
            },
            "prediction": {"psi": 0.31},
            "performance": {"window": {"auc": 0.612}, "reference_auc": 0.7},
            "report": f"file:///r/{date}",
        }
        | extra,
        layout.monitoring(date),
        layout.MONITORING_REPORT,
    )


@pytest.fixture
def rule_lake(tmp_path):
    return Lake(tmp_path.as_uri())


CFG = MonitorConfig(consecutive_days=2, cooldown_days=5)


@pytest.mark.parametrize(
    "signal, name, reason",
    [
        ("data", "data_drift", "data drift (temp, dewp) for 2 consecutive days"),
        ("pred", "prediction_drift", "prediction drift (score PSI 0.31) for 2 consecutive days"),
        ("decay", "decay", "decay (live AUC 0.612, validation 0.700) for 2 consecutive days"),
    ],
)
def test_each_signal_fires_the_rule_and_a_quiet_day_does_not(rule_lake, signal, name, reason):
    _write(rule_lake, "2013-05-01", {signal})
    _write(rule_lake, "2013-05-02", {signal})
    d = monitor.decide(rule_lake, "2013-05-02", CFG)
    assert d["fire"] and d["signals"] == [name] and d["reason"] == reason and d["held"] is None
    assert d["up_today"] == [name] and d["champion"] == "3" and d["report"] == "file:///r/2013-05-02"
    # worst first: the drifted features by KS, the undrifted one left out
    assert list(d["evidence"]) == ["temp", "dewp"] and d["evidence"]["temp"] == ["KS D 0.700 >= 0.5"]
    _write(rule_lake, "2013-05-03", set())
    quiet = monitor.decide(rule_lake, "2013-05-03", CFG)
    assert not quiet["fire"] and quiet["signals"] == [] and quiet["reason"] == "" and quiet["up_today"] == []


def test_signals_must_be_the_same_on_each_day(rule_lake):
    _write(rule_lake, "2013-05-01", {"data"})
    _write(rule_lake, "2013-05-02", {"decay"})
    assert not monitor.decide(rule_lake, "2013-05-02", CFG)["fire"]
    with pytest.raises(FileNotFoundError, match="no monitoring report for 2013-05-09"):
        monitor.decide(rule_lake, "2013-05-09", CFG)


def test_the_cool_down_counts_days_from_the_last_trigger(rule_lake):
    """kills: firing rule ignores the cool-down."""
    for i in range(1, 12):
        _write(rule_lake, f"2013-05-{i:02d}", {"data"})
    first = monitor.decide(rule_lake, "2013-05-02", CFG)
    monitor.record_trigger(rule_lake, first)
    held = monitor.decide(rule_lake, "2013-05-06", CFG)  # 4 of 5 days
    assert not held["fire"] and held["signals"] == ["data_drift"]
    assert held["held"] == "cool-down: last retraining trigger on 2013-05-02, 4 of 5 days ago"
    assert monitor.decide(rule_lake, "2013-05-07", CFG)["fire"]  # 5 days: released
    later = monitor.decide(rule_lake, "2013-05-07", CFG)
    monitor.record_trigger(rule_lake, later)
    assert [t["date"] for t in monitor.triggers(rule_lake)] == ["2013-05-02", "2013-05-07"]
    assert monitor.decide(rule_lake, "2013-05-11", CFG)["held"].startswith(
        "cool-down: last retraining trigger on 2013-05-07"
    )
    # a canary holds a fire, a finished rollout does not; every hold is named, the cool-down first
    both = monitor.decide(rule_lake, "2013-05-11", CFG, rollout={"status": "canary", "version": 7})["held"]
    assert both.startswith("cool-down: last retraining trigger on 2013-05-07") and both.endswith(
        "; a canary of v7 is running"
    )


def test_recording_a_trigger_marks_latest_only_for_its_own_day(rule_lake):
    _write(rule_lake, "2013-05-01", {"data"})
    _write(rule_lake, "2013-05-02", {"data"})
    rule_lake.write_json({"date": "2013-05-02", "fired": False}, *layout.monitoring_latest())
    d = monitor.decide(rule_lake, "2013-05-02", CFG)
    monitor.record_trigger(rule_lake, d)
    assert rule_lake.read_json(*layout.monitoring_latest()) == {
        "date": "2013-05-02",
        "fired": True,
        "reason": d["reason"],
    }
    assert monitor.triggers(rule_lake) == [
        {
            "date": "2013-05-02",
            "signals": ["data_drift"],
            "reason": d["reason"],
            "champion": "3",
            "report": "file:///r/2013-05-02",
        }
    ]
    rule_lake.write_json({"date": "2013-05-03", "fired": False}, *layout.monitoring_latest())
    monitor.record_trigger(rule_lake, d)  # a rerun of an older day
    assert rule_lake.read_json(*layout.monitoring_latest()) == {"date": "2013-05-03", "fired": False}
    assert len(monitor.triggers(rule_lake)) == 1


def test_two_signals_at_once_are_both_in_the_reason(rule_lake):
    for d in ("2013-05-01", "2013-05-02"):
        _write(rule_lake, d, {"data", "decay"})
    d = monitor.decide(rule_lake, "2013-05-02", CFG)
    assert d["signals"] == ["data_drift", "decay"] and d["drifted"] == ["temp", "dewp"]
    assert d["reason"] == ("data drift (temp, dewp); decay (live AUC 0.612, validation 0.700) for 2 consecutive days")


def test_a_prediction_drift_without_a_psi_reads_zero(rule_lake):
    for d in ("2013-05-01", "2013-05-02"):
        _write(rule_lake, d, {"pred"}, prediction={})
    assert (
        monitor.decide(rule_lake, "2013-05-02", CFG)["reason"]
        == "prediction drift (score PSI 0.00) for 2 consecutive days"
    )


def test_drifted_categories_come_after_the_numeric_evidence(rule_lake):
    features = [
        {"feature": "carrier", "drifted": True, "psi": 0.4, "reasons": ["PSI 0.400 >= 0.25"]},
        {"feature": "temp", "drifted": True, "ks": 0.7, "reasons": ["KS D 0.700 >= 0.5"]},
    ]
    for d in ("2013-05-01", "2013-05-02"):
        _write(rule_lake, d, {"data"}, features=features, drifted=["carrier", "temp"])
    assert list(monitor.decide(rule_lake, "2013-05-02", CFG)["evidence"]) == ["temp", "carrier"]


def test_a_day_whose_report_json_is_missing_counts_as_no_report(rule_lake):
    _write(rule_lake, "2013-05-01", {"data"})
    _write(rule_lake, "2013-05-02", {"data"})
    rule_lake.rm(layout.monitoring("2013-05-01"), layout.MONITORING_REPORT)
    rule_lake.write_bytes(b"<html></html>", layout.monitoring("2013-05-01"), layout.MONITORING_HTML)  # a cut-off run
    assert list(monitor.reports(rule_lake, [dt.date(2013, 5, 1), dt.date(2013, 5, 2)])) == ["2013-05-02"]
    assert not monitor.decide(rule_lake, "2013-05-02", CFG)["fire"]
    with pytest.raises(
        FileNotFoundError, match=f"no monitoring report for 2013-05-01 at {rule_lake.uri(layout.monitoring_reports())}$"
    ):
        monitor.decide(rule_lake, "2013-05-01", CFG)


def test_monitoring_thresholds_come_from_the_file_and_the_overrides(tmp_path):
    f = tmp_path / "monitoring.yaml"  # a file of one's own holds every value (the code holds none)
    f.write_text(
        MonitorConfig.FILE.read_text()
        .replace("window_days: 14", "window_days: 7")
        .replace("consecutive_days: 3", "consecutive_days: 2")
    )
    cfg = MonitorConfig.load(f, {"cooldown_days": 3, "window_days": None})
    assert (cfg.window_days, cfg.consecutive_days, cfg.cooldown_days) == (7, 2, 3)
    with pytest.raises(ValueError, match="unknown settings"):
        MonitorConfig.load(f, {"window_dayz": 1})
    shipped = MonitorConfig.load()  # include/config/monitoring.yaml
    assert shipped.consecutive_days >= 1 and shipped.cooldown_days >= 1


def test_the_report_is_plain_json():
    got = json_safe({"n": np.int64(3), "x": [np.float32(1.5), float("nan"), (np.inf, -np.inf)], "s": "a"})
    assert got == {"n": 3, "x": [1.5, None, [None, None]], "s": "a"}
    assert type(got["n"]) is int and type(got["x"][0]) is float


def test_current_values_of_any_dtype_are_judged_as_numbers():
    rng = np.random.default_rng(10)
    prof = _numeric(rng.integers(0, 24, 2000).astype(float))
    hours = pd.array(list(rng.integers(0, 24, 900)) + [None] * 100, dtype="Int64")  # curated: nullable ints
    [row] = feature_drift(prof, pd.DataFrame({"x": hours}), QUIET)
    assert row["missing_cur"] == pytest.approx(0.1) and row["rows"] == 900 and row["ks"] < 0.1
    text = pd.Series(["3", "n/a", "7.5", None], dtype="object")  # unparseable: missing
    [row] = feature_drift(prof, pd.DataFrame({"x": text}), QUIET)
    assert row["missing_cur"] == 0.5 and row["rows"] == 2


def test_an_empty_window_has_no_missing_categories():
    prof = {"features": {"origin": profile_sketch.categorical_profile(["EWR", "JFK"])}}
    [row] = feature_drift(prof, pd.DataFrame({"origin": pd.Series([], dtype="object")}), QUIET)
    assert row["missing_cur"] == 0.0 and row["missing_ref"] == 0.0


def test_no_current_category_at_all_is_undefined_not_drift():
    prof = {"features": {"origin": profile_sketch.categorical_profile(["EWR", "JFK"])}}
    [row] = feature_drift(
        prof, pd.DataFrame({"origin": pd.Series([None, None], dtype="object")}), QUIET.replace(missing_increase=2.0)
    )
    assert np.isnan(row["psi"]) and row["reasons"] == []


def test_a_threshold_on_a_statistic_without_a_label_is_named_by_its_key():
    prof = {"features": {"origin": profile_sketch.categorical_profile(["EWR"] * 7 + ["JFK"] * 3)}}
    cfg = QUIET.replace(categorical={"psi": None, "js": None, "unseen_share": 0.2})
    [row] = feature_drift(prof, pd.DataFrame({"origin": ["EWR"] * 7 + ["BOS"] * 3}), cfg)
    assert row["reasons"] == ["unseen_share 0.300 >= 0.2"]


def test_the_report_records_its_window_reference_and_config(lake, reference):
    cfg = ONLY_TEMP.replace(window_days=200, min_drifted_features=1)
    r = monitor.report(lake, JULY[-1], {"version": "1"}, reference, cfg)
    assert r["window"] == [JANUARY[0], JULY[-1]] and r["days"] == 4
    assert r["reference"] == {"rows": reference["rows"], "dates": reference["dates"]}
    assert r["config"]["window_days"] == 200 and r["config"]["features"] == {"temp": {"ks": 0.5}}
    assert lake.exists(f"reports/monitoring/date={JULY[-1]}", "report.html")


def test_the_label_rate_edges(lake, reference):
    cfg = ONLY_TEMP.replace(min_drifted_features=99, label_rate_change=0.05)
    first = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference | {"label_rate": 0.5}, cfg)
    change = first["label_rate"]["change"]
    at = monitor.report(
        lake, JANUARY[-1], {"version": "1"}, reference | {"label_rate": 0.5}, cfg.replace(label_rate_change=abs(change))
    )
    assert at["label_rate"]["drifted"] is True  # exactly the threshold fires
    none = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference | {"label_rate": None}, cfg)
    assert none["label_rate"]["change"] is None and none["label_rate"]["drifted"] is False  # NaN -> null


def test_decay_is_judged_from_exactly_min_labelled_outcomes(lake, reference):
    for d in JANUARY:
        log_predictions(lake, d, backwards)
    rows = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, ONLY_TEMP)["performance"]["window"]["rows"]
    at = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, ONLY_TEMP.replace(min_labelled=rows))
    assert at["performance"]["judged"] is True and at["signals"]["decay"] is True
    over = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, ONLY_TEMP.replace(min_labelled=rows + 1))
    assert over["performance"]["judged"] is False


def test_latest_follows_a_rerun_of_its_own_day_and_replaces_a_broken_file(lake, reference):
    cfg = ONLY_TEMP.replace(min_drifted_features=1)
    lake.write_json({"broken": True}, "reports/monitoring", "latest.json")  # no date in it
    monitor.report(lake, JULY[-1], {"version": "1"}, reference, cfg)
    assert lake.read_json("reports/monitoring", "latest.json")["drifted"] == ["temp"]
    monitor.report(lake, JULY[-1], {"version": "1"}, reference, cfg.replace(features={}))  # rerun, other rules
    assert lake.read_json("reports/monitoring", "latest.json")["drifted"] == []


def test_a_window_without_one_outcome_has_no_label_rate(tmp_path, reference):
    """Every flight of the window cancelled (no label): the delay rate is undefined, not an error."""
    lake = Lake(tmp_path.as_uri())
    write_curated(lake, JANUARY[-1:])
    folder = layout.partition("curated", "flights", dt.date.fromisoformat(JANUARY[-1]))
    fl = lake.read_parquet(folder, "part-00000.parquet")
    lake.write_parquet(
        fl.assign(is_labelled=False, label=pd.array([pd.NA] * len(fl), dtype="Int8")), folder, "part-00000.parquet"
    )
    r = monitor.report(lake, JANUARY[-1], {"version": "1"}, reference, ONLY_TEMP.replace(label_rate_change=0.05))
    assert r["label_rate"]["current"] is None and r["label_rate"]["change"] is None
    assert r["label_rate"]["drifted"] is False
