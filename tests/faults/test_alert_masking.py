"""A task's exception quotes a connection's password: the Slack alert about it must not. Slack is outside
Airflow's log masking, so every alert goes through Airflow's secrets masker before it is sent or logged."""

from __future__ import annotations

import json
import secrets

PASSWORD = "pw-" + secrets.token_hex(10)


def test_a_password_in_an_exception_never_reaches_slack(probe, slack, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAREHOUSE",
        json.dumps({"conn_type": "postgres", "host": "db.internal", "login": "loader", "password": PASSWORD}),
    )
    run = probe("alert_masking_probe")
    assert run.state == "failed" and run.tasks["log_in"][0] == "failed", run
    [alert] = [p for p in slack.payloads if p["text"].startswith("[FAILURE]")]
    assert "Task log_in failed" in alert["text"]
    assert "ConnectionError: login to db.internal as loader refused" in alert["text"]
    assert "(password '***')" in alert["text"]  # masked, not dropped
    assert PASSWORD not in json.dumps(slack.payloads)  # text and blocks, every message
    assert any("(password '***')" in b.get("text", {}).get("text", "") for b in alert["blocks"])
