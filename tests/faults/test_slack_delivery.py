"""Slack delivery against real HTTP stand-ins: the API-token path (``slack`` connection, ``chat.postMessage``
at the connection's ``base_url``), and a Slack that errs or hangs, which must neither fail nor stall a task:
each send is bounded by MLOPS_SLACK_TIMEOUT_S, tried once, and the task's outcome stays its own."""

from __future__ import annotations

import json
import time

import pytest
from slack_endpoint import SlackEndpoint


@pytest.fixture
def endpoint(request, monkeypatch):
    api, behaviour = request.param
    ep = SlackEndpoint(api=api, behaviour=behaviour)
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps(ep.connection()))
    yield ep
    ep.close()


@pytest.mark.parametrize("endpoint", [(True, "ok")], indirect=True, ids=["api"])
def test_the_token_path_posts_to_chat_postmessage(probe, endpoint):
    run = probe("slack_delivery_probe")
    assert run.tasks["notify"][0] == "success" and run.tasks["fail"][0] == "failed", run
    by_title = {p["text"].splitlines()[0]: p for p in endpoint.payloads}
    assert set(by_title) == {"[GATE] Probe decision", "[FAILURE] Task fail failed"}, list(by_title)
    gate = by_title["[GATE] Probe decision"]
    assert gate["path"] == "/api/chat.postMessage" and gate["channel"] == "#mlops-test"  # token checked there
    assert "a decision worth telling" in gate["text"] and "probe: 1" in gate["text"]
    assert gate["blocks"][0]["text"]["text"].startswith(":vertical_traffic_light: *Probe decision*")
    assert "RuntimeError: probe failure" in by_title["[FAILURE] Task fail failed"]["text"]


TIMEOUT_S = 3


@pytest.mark.parametrize(
    "endpoint",
    [(False, "error"), (True, "error"), (False, "hang"), (True, "hang")],
    indirect=True,
    ids=["webhook-500", "api-not-ok", "webhook-hangs", "api-hangs"],
)
def test_a_broken_slack_neither_fails_nor_stalls_the_task(probe, endpoint, monkeypatch):
    monkeypatch.setenv("MLOPS_SLACK_TIMEOUT_S", str(TIMEOUT_S))
    t0 = time.monotonic()
    run = probe("slack_delivery_probe")
    took = time.monotonic() - t0
    # the outcomes are the tasks' own: the alerting one succeeds, the failing one fails (no error from Slack)
    assert run.tasks["notify"] == ("success", 1) and run.tasks["fail"] == ("failed", 1), run
    assert endpoint.payloads == [] and endpoint.requests == 2  # each alert tried once, no retries
    if endpoint.behaviour == "hang":
        # the alerting task waited for Slack about MLOPS_SLACK_TIMEOUT_S, not the hook's default or forever
        assert TIMEOUT_S - 0.5 <= run.durations["notify"] <= TIMEOUT_S + 5, run.durations
        assert took < 2 * TIMEOUT_S + 30, took
    else:
        assert run.durations["notify"] < TIMEOUT_S, run.durations  # an error answer costs no waiting
