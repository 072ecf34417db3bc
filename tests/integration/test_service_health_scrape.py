"""Monitoring's check of the prediction service against the real service over HTTP: two checks after known
loads, each counting its own period's requests, with p50/p99 no slower than the clients saw."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from tiny_service import AUTH, TOKEN, send, tiny_service

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.monitor import service
from include.mlops.monitor.config import MonitorConfig
from include.mlops.serve.metrics import BUCKETS
from include.mlops.simulate.traffic import requests_for

T0 = dt.datetime(2013, 1, 22, 6, tzinfo=dt.UTC)


@pytest.fixture
def url(tmp_path):
    with tiny_service(tmp_path) as url:
        yield url


def bound_ms(seconds: float) -> float:
    """The upper bound of the bucket holding ``seconds``: no interpolated quantile of faster requests is above."""
    return 1000 * min([b for b in BUCKETS if b >= seconds] or [BUCKETS[-1]])


def test_two_checks_count_their_own_periods(url, tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    env = {"MLOPS_SERVE_URL": url, "MLOPS_SERVE_TOKEN": TOKEN}
    limits = MonitorConfig.load().service
    flights = requests_for("2013-01-22")

    first_load = send(url, flights, singles=15, batches=3)
    with httpx.Client() as client:  # 2 bodies refused, 1 request without the token: 4xx
        assert client.post(url + "/predict", json=flights[0] | {"month": 13}, headers=AUTH).status_code == 422
        assert client.post(url + "/predict", json=flights[0] | {"origin": "jfk"}, headers=AUTH).status_code == 422
        assert client.post(url + "/predict", json=flights[0]).status_code == 401
    first = service.check(lake, limits, env=env, now=T0)
    assert first["status"] == "ok" and first["from"] is None and not first["reset"]
    assert first["requests"] == 18 + 3 and first["rejected"] == 3 and first["errors"] == 0
    assert first["by_route"]["/predict"]["requests"] == 18 and first["by_route"]["/predict/batch"]["requests"] == 3
    assert first["rejected_rate"] == pytest.approx(3 / 21) and first["error_rate"] == 0
    assert 0 < first["p50_ms"] <= first["p99_ms"] <= bound_ms(first_load["slowest_s"])
    # per arm and version: the answered requests, each batch under every arm that scored in it
    single = sum(r["requests"] for r in first["by_arm"] if r["route"] == "/predict")
    batch = sum(r["requests"] for r in first["by_arm"] if r["route"] == "/predict/batch")
    assert single == 15 and 3 <= batch <= 6
    assert {(r["arm"], r["version"]) for r in first["by_arm"]} == {("champion", "1"), ("challenger", "2")}
    assert all(0 < r["p50_ms"] <= r["p99_ms"] for r in first["by_arm"])
    assert lake.read_json(*layout.service_scrape())["at"] == T0.isoformat()

    second_load = send(url, flights[15:], singles=25)
    second = service.check(lake, limits, env=env, now=T0 + dt.timedelta(days=1))
    assert second["from"] == T0.isoformat() and second["to"] == (T0 + dt.timedelta(days=1)).isoformat()
    assert second["requests"] == 25 and second["rejected"] == 0 and not second["reset"]
    assert second["by_route"]["/predict/batch"] == {
        "requests": 0,
        "errors": 0,
        "rejected": 0,
        "p50_ms": None,
        "p99_ms": None,
    }
    assert 0 < second["p50_ms"] <= second["p99_ms"] <= bound_ms(second_load["slowest_s"])
    assert sum(r["requests"] for r in second["by_arm"]) == 25
    assert not second["alert"], second["reasons"]  # a tiny model on loopback: well within 250 ms

    third = service.check(lake, limits | {"p99_ms": 0.001, "min_requests": 1}, env=env, now=T0)
    assert third["requests"] == 0 and third["p99_ms"] is None and not third["alert"]  # nothing since: no signal
