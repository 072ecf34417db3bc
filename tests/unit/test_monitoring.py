"""The monitoring report on real 2013 data, and the firing rule (consecutive days, cool-down, canary)."""

import datetime as dt

import pytest
from curation import write_curated

from include.mlops.core import frame, layout, schema
from include.mlops.core import profile as P
from include.mlops.core.lake import Lake
from include.mlops.monitor import monitor
from include.mlops.monitor.config import MonitorConfig


# ------------------------------------------------------------------------------------------- the firing rule
def _reports(lake, start, signals_by_day):
    d0 = dt.date.fromisoformat(start)
    for i, signals in enumerate(signals_by_day):
        d = (d0 + dt.timedelta(days=i)).isoformat()
        features = [
            {"feature": f, "drifted": bool(signals), "ks": 0.6, "reasons": ["KS D 0.600 >= 0.5"]}
            for f in ("temp", "dewp")
        ]
        lake.write_json(
            {
                "date": d,
                "champion": "1",
                "drifted": ["temp", "dewp"] if signals else [],
                "features": features,
                "signals": {"data_drift": "data" in signals, "prediction_drift": False, "decay": "decay" in signals},
                "prediction": {},
                "performance": {"window": {"auc": 0.6}, "reference_auc": 0.7},
                "report": f"file:///r/{d}",
            },
            layout.monitoring(d),
            "report.json",
        )


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path.as_uri())


CFG = MonitorConfig(consecutive_days=3, cooldown_days=10)


def test_fires_only_after_consecutive_days(lake):
    _reports(lake, "2013-03-01", [{"data"}, {"data"}, set(), {"data"}, {"data"}, {"data"}])
    assert not monitor.decide(lake, "2013-03-02", CFG)["fire"]  # 2 days so far
    assert not monitor.decide(lake, "2013-03-03", CFG)["fire"]  # a quiet day breaks the run
    assert not monitor.decide(lake, "2013-03-05", CFG)["fire"]
    d = monitor.decide(lake, "2013-03-06", CFG)
    assert d["fire"] and d["signals"] == ["data_drift"]
    assert "data drift (temp, dewp) for 3 consecutive days" in d["reason"]


def test_a_missing_report_breaks_the_run(lake):
    _reports(lake, "2013-03-01", [{"data"}, {"data"}, {"data"}])
    lake.rm(layout.monitoring("2013-03-02"))
    assert not monitor.decide(lake, "2013-03-03", CFG)["fire"]


def test_cooldown_holds_and_then_releases(lake):
    _reports(lake, "2013-03-01", [{"data", "decay"}] * 20)
    first = monitor.decide(lake, "2013-03-03", CFG)
    assert first["fire"] and first["signals"] == ["data_drift", "decay"]
    monitor.record_trigger(lake, first)
    for day in ("2013-03-04", "2013-03-12"):
        held = monitor.decide(lake, day, CFG)
        assert not held["fire"] and held["held"].startswith("cool-down: last retraining trigger on 2013-03-03")
    assert monitor.decide(lake, "2013-03-13", CFG)["fire"]  # 10 days later
    # a rerun of the trigger's own day is not held by itself
    assert monitor.decide(lake, "2013-03-03", CFG)["fire"]
    monitor.record_trigger(lake, first)
    assert [t["date"] for t in monitor.triggers(lake)] == ["2013-03-03"]


def test_a_running_canary_holds_the_trigger(lake):
    _reports(lake, "2013-03-01", [{"data"}] * 3)
    d = monitor.decide(lake, "2013-03-03", CFG, rollout={"status": "canary", "version": "4"})
    assert not d["fire"] and d["held"] == "a canary of v4 is running"
    assert monitor.decide(lake, "2013-03-03", CFG, rollout={"status": "promoted", "version": "4"})["fire"]


# ------------------------------------------------------------------------------ the report on real flights
@pytest.fixture(scope="module")
def flights_lake(tmp_path_factory):
    lake = Lake(tmp_path_factory.mktemp("lake").as_uri())
    write_curated(lake, [f"2013-{m:02d}-{d:02d}" for m in (1, 7) for d in range(1, 8)])
    return lake


def _reference(lake):
    fl, we, used = frame.load_window(lake, "2013-01-07", 7)
    return P.build(
        frame.join_sources(fl[fl["is_labelled"]], we),
        schema.features().numeric,
        schema.features().categorical,
        [d.isoformat() for d in used],
    )


WEEK = MonitorConfig(window_days=7, consecutive_days=3)


def test_quiet_on_the_reference_week_fires_on_a_july_week(flights_lake):
    lake, prof = flights_lake, _reference(flights_lake)
    for day in ("2013-01-07", "2013-07-05", "2013-07-06", "2013-07-07"):
        monitor.report(lake, day, {"version": "1"}, prof, WEEK)
    january = monitor.reports(lake, [dt.date(2013, 1, 7)])["2013-01-07"]
    assert january["drifted"] == [] and not any(january["signals"].values())
    assert all((f.get("ks") or 0) < 0.2 for f in january["features"])
    assert not monitor.decide(lake, "2013-01-07", WEEK)["fire"]

    july = monitor.reports(lake, [dt.date(2013, 7, 7)])["2013-07-07"]
    ks = {f["feature"]: f["ks"] for f in july["features"] if f["kind"] == "numeric"}
    assert ks["temp"] > 0.95 and ks["dewp"] > 0.9  # January against July: every flight warmer
    assert {"temp", "dewp"} <= set(july["drifted"]) and "month" not in ks  # calendar features are ignored
    assert july["label_rate"]["current"] > july["label_rate"]["reference"]
    d = monitor.decide(lake, "2013-07-07", WEEK)
    assert d["fire"] and d["signals"] == ["data_drift"] and "temp" in d["reason"]
    # the report is readable on its own: JSON and a self-contained HTML page with the plots
    html = lake.read_bytes("reports/monitoring/date=2013-07-07", "report.html").decode()
    assert html.count("<svg") >= 17 and "temp (drift)" in html and "Data drift" in html
    assert lake.read_json("reports/monitoring", "latest.json")["date"] == "2013-07-07"


def test_live_performance_joins_predictions_with_later_outcomes(flights_lake):
    import pandas as pd

    from include.mlops.core import predictions
    from include.mlops.monitor import performance

    lake = flights_lake
    cur = lake.read_parquet("curated/flights/date=2013-07-02", "part-00000.parquet")
    cur = cur[cur["is_labelled"]]
    keys = schema.row_key(cur).to_numpy()
    y = cur["label"].astype(int).to_numpy()
    preds = pd.DataFrame(
        {
            "flight_key": list(keys) + ["2013-07-02/XX/1/JFK"],
            "arm": "champion",
            "version": "1",
            "score": list(0.8 * y + 0.1) + [0.5],
            "predicted_at": pd.Timestamp("2026-01-01", tz="UTC").isoformat(),
        }
    )
    lake.write_parquet(preds, "predictions/date=2013-07-02", "part-0.parquet")
    joined = predictions.joined(lake, [dt.date(2013, 7, 2)], versions={"1"})
    assert len(joined) == len(keys)  # the unknown flight has no outcome
    s = performance.summary(joined)
    assert s["auc"] == pytest.approx(1.0) and s["rows"] == len(keys)
    r = monitor.report(
        lake,
        "2013-07-03",
        {"version": "1"},
        _reference(lake) | {"validation": {"auc": 0.7}},
        MonitorConfig(window_days=7, min_labelled=100),
    )
    assert r["performance"]["window"]["rows"] == len(keys)
    assert not r["performance"]["decayed"]  # live AUC 1.0 is no decay
    assert r["prediction"]["rows"] == len(keys) + 1


def test_the_model_state_page_shows_the_last_drift_report(flights_lake):
    from mlops_airflow.ui.page import render

    monitor.report(flights_lake, "2013-07-07", {"version": "1"}, _reference(flights_lake), WEEK)
    latest = flights_lake.read_json("reports/monitoring", "latest.json")
    page = render(
        {
            "model": "flight_delay",
            "errors": {},
            "versions": [],
            "champion": {"version": "1"},
            "challenger": None,
            "drift": latest,
            "gate": None,
            "rollout": None,
            "lake": flights_lake.url,
        }
    )
    assert latest["date"] in page and "dewp" in page and "temp" in page and latest["report"] in page
    assert "No monitoring report yet" not in page


def test_the_report_shows_the_service_and_its_signals_never_retrain(flights_lake):
    """The run's check of the prediction service is in report.json, the HTML and latest.json; a latency signal up
    on three consecutive days still triggers no retraining (it alerts, from monitor_model's service_health)."""
    lake, prof = flights_lake, _reference(flights_lake)
    slow = {
        "status": "ok",
        "url": "http://svc:8000",
        "from": "2013-01-03T06:00:00+00:00",
        "to": "2013-01-04T06:00:00+00:00",
        "requests": 120,
        "p50_ms": 3.2,
        "p99_ms": 412.5,
        "errors": 0,
        "rejected": 6,
        "error_rate": 0.0,
        "rejected_rate": 0.05,
        "by_route": {"/predict": {"requests": 120, "errors": 0, "rejected": 6, "p50_ms": 3.2, "p99_ms": 412.5}},
        "by_arm": [
            {"route": "/predict", "arm": "champion", "version": "1", "requests": 114, "p50_ms": 3.1, "p99_ms": 9.0}
        ],
        "reset": False,
        "signals": {"service_down": False, "latency": True, "errors": False, "rejected": False},
        "reasons": ["p99 412.5 ms over 250 ms (120 requests)"],
        "alert": True,
    }
    if lake.exists(*layout.monitoring_latest()):  # the module's lake: a later date's summary from another test
        lake.rm(*layout.monitoring_latest())
    for day in ("2013-01-05", "2013-01-06", "2013-01-07"):
        monitor.report(lake, day, {"version": "1"}, prof, WEEK, service=slow)
    r = monitor.reports(lake, [dt.date(2013, 1, 7)])["2013-01-07"]
    # the service's signals are not among the report's (the retraining ones and the skew alert)
    assert r["service"] == slow and set(r["signals"]) == set(monitor.SIGNALS + monitor.ALERTS)
    assert not monitor.decide(lake, "2013-01-07", WEEK)["fire"]
    page = lake.read_bytes("reports/monitoring/date=2013-01-07", "report.html").decode()
    assert "Prediction service" in page and "412.5 ms" in page and "3.2 ms" in page and "5.00%" in page
    assert "champion" in page and "latency" in page and "p99 412.5 ms over 250 ms" in page
    latest = lake.read_json("reports/monitoring", "latest.json")
    assert latest["service"] == {"status": "ok", "signals": slow["signals"], "reasons": slow["reasons"]}
    # a date the run did not check the service on says so
    monitor.report(lake, "2013-01-07", {"version": "1"}, prof, WEEK)
    r = monitor.reports(lake, [dt.date(2013, 1, 7)])["2013-01-07"]
    assert r["service"]["status"] == "not checked"
    assert "not checked" in lake.read_bytes("reports/monitoring/date=2013-01-07", "report.html").decode()
