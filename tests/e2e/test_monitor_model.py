"""monitor_model end to end with dag.test(): a champion trained on February watches July arrive, alerts on
drift after three consecutive days, triggers train_model with the reason, then holds during the cool-down."""

from __future__ import annotations

import pytest
from curation import curate_days
from tiny_service import send, tiny_service

from include.mlops.core import registry
from include.mlops.monitor import monitor
from include.mlops.simulate.traffic import requests_for
from include.mlops.train import pipeline

CONF = {"window_days": 7, "consecutive_days": 3, "cooldown_days": 14}


@pytest.fixture(scope="module")
def champion(curated):
    """A registry of its own with a champion trained on February (its profile saved with the version)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLOPS_MODEL_NAME", "monitor_test")
    pipeline.build_training_set(curated, "monitor-champion", 21, 1, end="2013-02-21")
    pipeline.train(curated, "monitor-champion", 1, num_boost_round=40)
    version = pipeline.register(curated, "monitor-champion", params={"num_boost_round": 40}, reason="e2e")["version"]
    registry.set_alias("champion", version)
    curate_days(curated, "2013-07-01", 4)
    yield version
    mp.undo()


def test_profile_is_saved_with_the_model_version(champion):
    profile = registry.load_artifact(champion, "profile.json")
    assert profile["dates"][0] == "2013-02-01" and profile["rows"] > 5000
    assert set(profile["features"]) >= {"temp", "dewp", "carrier", "origin"}
    assert len(profile["features"]["temp"]["quantiles"]) == 501
    assert 0 < profile["validation"]["auc"] < 1 and profile["score"]["rows"] > 500


def _drift_messages(slack):
    return [t for t in slack.texts() if t.startswith("[DRIFT]")]


def test_drift_alerts_and_triggers_train_model_then_cools_down(
    run_dag, curated, champion, slack, tmp_path, monkeypatch
):
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    for day in ("2013-07-01", "2013-07-02"):
        run = run_dag("monitor_model", day, conf=CONF)
        assert run.state == "success", run
        assert run.tasks["report"][0] == "success" and run.tasks["trigger_train_model"][0] == "skipped"
    assert not _drift_messages(slack)

    report = curated.read_json("reports/monitoring/date=2013-07-02", "report.json")
    assert report["service"]["status"] == "not configured"  # MLOPS_SERVE_URL unset: said, no alert

    # the third day with the prediction service running: its requests and latency in the day's report
    with tiny_service(tmp_path) as url:
        monkeypatch.setenv("MLOPS_SERVE_URL", url)
        send(url, requests_for("2013-07-03"), singles=8, batches=2)
        run = run_dag("monitor_model", "2013-07-03", conf=CONF)
    monkeypatch.delenv("MLOPS_SERVE_URL")
    assert run.state == "success", run
    assert run.tasks["trigger_train_model"][0] == "success" and run.tasks["service_health"][0] == "success"
    report = curated.read_json("reports/monitoring/date=2013-07-03", "report.json")
    assert report["champion"] == champion and {"temp", "dewp"} <= set(report["drifted"])
    assert curated.exists("reports/monitoring/date=2013-07-03", "report.html")
    svc = report["service"]
    assert svc["status"] == "ok" and svc["requests"] == 10 and svc["errors"] == 0 and svc["error_rate"] == 0
    assert 0 < svc["p50_ms"] <= svc["p99_ms"] and not svc["alert"]  # 10 requests: under min_requests, not judged
    page = curated.read_bytes("reports/monitoring/date=2013-07-03", "report.html").decode()
    assert "Prediction service" in page and "latency p50 / p99" in page and "5xx rate" in page
    assert not [t for t in slack.texts() if t.startswith("[SERVICE]")]
    [msg] = _drift_messages(slack)
    assert f"Drift on model v{champion}: retraining" in msg and "temp" in msg and "report.html" in msg
    assert "KS" in msg and "3 consecutive days" in msg
    with create_session() as s:
        queued = s.query(DagRun).filter_by(dag_id="train_model").all()
        confs = [r.conf or {} for r in queued]
    assert any("data drift" in str(c.get("reason")) and c.get("end_date") == "2013-07-03" for c in confs), confs
    assert [t["date"] for t in monitor.triggers(curated)] == ["2013-07-03"]
    assert curated.read_json("reports/monitoring", "latest.json")["fired"] is True

    # the next day still drifts, but the cool-down holds: no second trigger, no second alert
    run = run_dag("monitor_model", "2013-07-04", conf=CONF)
    assert run.state == "success", run
    assert run.tasks["check_thresholds"][0] == "success" and run.tasks["trigger_train_model"][0] == "skipped"
    assert len(_drift_messages(slack)) == 1
    assert [t["date"] for t in monitor.triggers(curated)] == ["2013-07-03"]
    # the daily audit check: the champion was set in MLflow by hand (this module's fixture), outside the platform:
    # recorded once, whatever the number of runs since
    from include.mlops.core import audit

    assert run.tasks["audit_check"][0] == "success"
    outside = [r for r in audit.history(curated) if r["event"] == "alias_changed_outside"]
    assert [(r["version"], r["evidence"]["to"]) for r in outside] == [(champion, champion)], outside
    assert audit.verify(curated)["ok"]


def test_nothing_to_monitor_without_a_champion(run_dag, curated, monkeypatch):
    monkeypatch.setenv("MLOPS_MODEL_NAME", "no_model_yet")
    run = run_dag("monitor_model", "2013-07-02", conf=CONF)
    assert run.state == "success", run
    assert run.tasks["report"][0] == "skipped" and run.tasks["trigger_train_model"][0] == "skipped"


def test_new_data_alone_does_not_retrain_a_serving_champion(curated, champion):
    from types import SimpleNamespace

    from mlops_airflow.tasks.train_model import should_train

    params = {"min_days": 14, "end_date": "2013-02-21", "reason": "scheduled"}
    asset_run = {"params": params, "dag_run": SimpleNamespace(run_type="asset_triggered")}
    manual_run = {"params": params, "dag_run": SimpleNamespace(run_type="manual")}
    assert registry.alias_version("champion")["version"] == champion
    assert not should_train(asset_run)  # monitoring decides on retraining once a champion serves
    assert should_train(manual_run)  # a person (or monitor_model's trigger) still can
    assert not should_train({"params": params | {"min_days": 60}, "dag_run": manual_run["dag_run"]})


def test_a_broken_audit_trail_fails_the_daily_check_and_alerts(run_dag, curated, champion, slack):
    """A record of the trail edited in the lake: monitor_model's audit_check fails (for good: a person must look)
    and Slack names the record; the drift path runs on."""
    import json

    from include.mlops.core import audit, layout

    audit.check_champion(curated, {"kind": "platform"})  # the trail holds its first record at least
    where = (layout.audit_trail(), audit.record_name(1))
    kept = curated.read_bytes(*where)
    curated.write_bytes(json.dumps(json.loads(kept) | {"why": "nothing happened"}).encode(), *where)
    try:
        run = run_dag("monitor_model", "2013-07-01", conf=CONF)
        assert run.tasks["audit_check"] == ("failed", 1) and run.tasks["report"][0] == "success", run.tasks
        alerts = [t for t in slack.texts() if t.startswith("[AUDIT]")]
        assert any("Audit trail broken" in t and audit.record_name(1) in t for t in alerts), alerts
    finally:
        curated.write_bytes(kept, *where)
    assert audit.verify(curated)["ok"]


def test_two_failed_retrainings_start_a_tuning_study_instead(run_dag, curated, champion, slack):
    """monitoring.yaml tuning.after_failed_retrains (2): the retrainings of the two triggers before this one each
    failed the gate and the way back found nothing better (their gate decisions and way-back results in the lake,
    under the run ids the triggers recorded): the fire starts tune_model (then train_model after it) instead of a
    third retraining on the same parameters, under the run id its own record names."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    from include.mlops.core import layout
    from include.mlops.core.lake import run_key

    kept = curated.read_bytes(*layout.triggers()) if curated.exists(*layout.triggers()) else None
    earlier = []
    for date in ("2013-06-01", "2013-06-15"):
        t = {"date": date, "signals": ["decay"], "reason": "decay", "champion": champion, "report": "x"}
        t |= {"remedy": "retrain", "run_id": f"monitoring__{date}__20261201T000000"}
        key = run_key(t["run_id"])
        curated.write_json({"passed": False, "version": "9"}, layout.gate(key), layout.GATE_DECISION)
        curated.write_json({"chosen": None, "earlier": []}, *layout.way_back(key))
        earlier.append(t)
    curated.write_json(earlier, *layout.triggers())
    try:
        run = run_dag("monitor_model", "2013-07-04", conf=CONF | {"consecutive_days": 1, "cooldown_days": 0})
        assert run.state == "success", run
        assert run.tasks["trigger_tune_model"][0] == "success" and run.tasks["trigger_train_model"][0] == "skipped"
        fired = monitor.triggers(curated)[-1]
        assert fired["date"] == "2013-07-04" and fired["remedy"] == "tune", fired
        with create_session() as s:
            (study,) = s.query(DagRun).filter_by(dag_id="tune_model", run_id=fired["run_id"]).all()
            conf = study.conf
        assert conf["train_after"] is True and conf["end_date"] == "2013-07-04" and "drift" in conf["reason"], conf
        msg = [t for t in _drift_messages(slack) if "2013-07-04" in t or "tuning study" in t]
        assert any("a tuning study, then retraining" in t and "2013-06-01, 2013-06-15" in t for t in msg), msg
    finally:
        if kept is None:
            curated.rm(*layout.triggers())
        else:
            curated.write_bytes(kept, *layout.triggers())
