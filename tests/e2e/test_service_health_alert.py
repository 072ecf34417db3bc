"""monitor_model's service_health with dag.test() against the real prediction service and a real Slack webhook
stand-in: a p99 over the threshold in monitoring.yaml sends a Slack alert of kind service naming the p99, and an
unreachable service alerts too; neither retrains (no train_model run, no trigger recorded)."""

from __future__ import annotations

import shutil
import socket
import uuid

import pytest
from tiny_service import TOKEN, send, tiny_service

from include.mlops.core.config import CONFIG_DIR
from include.mlops.monitor import monitor
from include.mlops.simulate.traffic import requests_for


@pytest.fixture
def no_champion(monkeypatch):
    """A registered model of this test's own, without versions: report skips, service_health still runs."""
    monkeypatch.setenv("MLOPS_MODEL_NAME", f"service_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def strict_config(tmp_path, monkeypatch):
    """The project's settings with a p99 threshold of 0.001 ms on at least 5 requests (MLOPS_CONFIG_DIR)."""
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    f = folder / "monitoring.yaml"
    text = f.read_text()
    assert "  p99_ms: 250 " in text and "  min_requests: 20 " in text
    f.write_text(
        text.replace("  p99_ms: 250 ", "  p99_ms: 0.001 ").replace("  min_requests: 20 ", "  min_requests: 5 ")
    )
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(folder))


def _service_messages(slack):
    return [t for t in slack.texts() if t.startswith("[SERVICE]")]


def train_model_runs() -> int:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as s:
        return s.query(DagRun).filter_by(dag_id="train_model").count()


def _no_retraining(lake, run, runs_before: int, triggers_before: list):
    assert run.tasks["trigger_train_model"][0] != "success", run
    assert train_model_runs() == runs_before
    assert monitor.triggers(lake) == triggers_before


def test_a_slow_service_raises_the_latency_alert(
    run_dag, slack, lake, tmp_path, monkeypatch, no_champion, strict_config
):
    with tiny_service(tmp_path) as url:
        monkeypatch.setenv("MLOPS_SERVE_URL", url)
        monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)
        send(url, requests_for("2013-01-22"), singles=12, batches=2)
        before = train_model_runs(), monitor.triggers(lake)
        run = run_dag("monitor_model", "2013-01-22")
    assert run.state == "success", run
    assert run.tasks["service_health"][0] == "success" and run.tasks["report"][0] == "skipped"
    [msg] = _service_messages(slack)
    assert msg.startswith("[SERVICE] Prediction service: p99 ") and "over 0.001 ms (14 requests)" in msg, msg
    assert "p99: " in msg and "requests: 14" in msg and "does not retrain" in msg
    assert "task `service_health`" in msg
    _no_retraining(lake, run, *before)


def test_an_unreachable_service_raises_the_alert(run_dag, slack, lake, monkeypatch, no_champion):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    monkeypatch.setenv("MLOPS_SERVE_URL", url)
    before = train_model_runs(), monitor.triggers(lake)
    run = run_dag("monitor_model", "2013-01-22")
    assert run.state == "success", run
    assert run.tasks["service_health"][0] == "success" and run.tasks["report"][0] == "skipped"
    [msg] = _service_messages(slack)
    assert msg.startswith(f"[SERVICE] Prediction service unreachable at {url}") and "URLError" in msg, msg
    _no_retraining(lake, run, *before)


def test_no_service_configured_no_alert(run_dag, slack, monkeypatch, no_champion):
    monkeypatch.delenv("MLOPS_SERVE_URL", raising=False)
    run = run_dag("monitor_model", "2013-01-22")
    assert run.state == "success" and run.tasks["service_health"][0] == "success", run
    assert not _service_messages(slack)
