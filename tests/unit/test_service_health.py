"""The service's health for monitoring (``monitor/service.py``), without a server: the quantile from histogram
buckets as Prometheus computes it, the period's deltas, a reset, the thresholds, and the cases that must not
read as "nothing to report" (not configured, unreachable, not Prometheus' text)."""

from __future__ import annotations

import datetime as dt
import math
import socket

import pytest

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.monitor import service
from include.mlops.monitor.config import MonitorConfig
from include.mlops.serve.metrics import ServiceMetrics

INF = math.inf
LIMITS = {"p99_ms": 250, "p50_ms": None, "error_rate": 0.01, "rejected_rate": None, "min_requests": 20}
T0 = dt.datetime(2013, 2, 1, 6, tzinfo=dt.UTC)


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def metrics() -> ServiceMetrics:
    return ServiceMetrics(lambda: (None, None, None))


def load(m: ServiceMetrics, route: str, status: int, seconds: float, n: int, arm: str | None = "champion"):
    for _ in range(n):
        m.observe(route, status, seconds)
        if status == 200 and arm and route.startswith("/predict"):
            m.served(route, ((arm, "1"),), seconds)


def samples(m: ServiceMetrics) -> service.Samples:
    return service.parse(m.exposition().decode())


# ---------------------------------------------------------------------------------------- histogram_quantile
@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {1: 10, 2: 30, 5: 40, INF: 40}, 1.5),  # rank 20 in (1, 2]: 1 + 1 * (20 - 10) / 20
        (0.99, {1: 10, 2: 30, 5: 40, INF: 40}, 4.88),  # rank 39.6 in (2, 5]: 2 + 3 * 9.6 / 10
        (0.5, {1: 10, INF: 10}, 0.5),  # the lowest bucket starts at 0
        (0.99, {1: 10, INF: 20}, 1.0),  # a rank in +Inf: the highest finite bound
        (0.5, {0.001: 0, 0.002: 4, INF: 4}, 0.0015),
    ],
)
def test_the_quantile_interpolates_within_a_bucket_as_prometheus_does(q, buckets, expected):
    assert service.quantile(q, buckets) == pytest.approx(expected)


def test_an_empty_histogram_has_no_quantile():
    assert service.quantile(0.99, {1: 0, INF: 0}) is None
    with pytest.raises(ValueError, match=r"\+Inf"):
        service.quantile(0.5, {1: 3})


# ---------------------------------------------------------------------------------------- the period's numbers
def test_the_period_is_the_difference_between_two_scrapes():
    m = metrics()
    load(m, "/predict", 200, 0.0015, 100)  # before the previous check: not in the period
    before = samples(m)
    load(m, "/predict", 200, 0.003, 40)  # in (0.002, 0.005]
    load(m, "/predict/batch", 200, 0.3, 5, arm="challenger")
    load(m, "/predict", 422, 0.0008, 4)
    load(m, "/predict", 503, 0.0008, 1)
    load(m, "/health", 200, 0.0001, 50)  # not a prediction route
    got = service.summarise(samples(m), before)
    assert not got["reset"]
    assert got["requests"] == 50 and got["errors"] == 1 and got["rejected"] == 4
    assert got["error_rate"] == pytest.approx(0.02) and got["rejected_rate"] == pytest.approx(0.08)
    assert got["by_route"]["/predict"] | {"p50_ms": 0, "p99_ms": 0} == {
        "requests": 45,
        "errors": 1,
        "rejected": 4,
        "p50_ms": 0,
        "p99_ms": 0,
    }
    assert 2 < got["by_route"]["/predict"]["p50_ms"] <= 5  # the 40 answered at 3 ms, not the 100 before
    assert 200 < got["by_route"]["/predict/batch"]["p99_ms"] <= 500
    assert 200 < got["p99_ms"] <= 500 and 2 < got["p50_ms"] <= 5  # both routes together
    assert [(r["route"], r["arm"], r["version"], r["requests"]) for r in got["by_arm"]] == [
        ("/predict", "champion", "1", 40),
        ("/predict/batch", "challenger", "1", 5),
    ]
    assert 2 < got["by_arm"][0]["p99_ms"] <= 5 and 200 < got["by_arm"][1]["p50_ms"] <= 500


def test_a_restarted_service_counts_from_zero_and_says_so():
    old = metrics()
    load(old, "/predict", 200, 0.003, 100)
    before = samples(old)
    new = metrics()  # a new process: its counters start again
    load(new, "/predict", 200, 0.3, 30)
    got = service.summarise(samples(new), before)
    assert got["reset"] and got["requests"] == 30 and 200 < got["p50_ms"] <= 500


def test_a_changed_start_time_is_a_reset_even_with_higher_counters():
    m = metrics()
    load(m, "/predict", 200, 0.003, 10)
    before = samples(m)
    load(m, "/predict", 200, 0.003, 10)
    after = samples(m)
    start = next(k for k in after if k[0] == service.START)
    got = service.summarise(after | {start: after[start] + 60}, before)
    assert got["reset"] and got["requests"] == 20


def test_no_requests_means_no_latency_and_no_signal():
    m = metrics()
    s = samples(m)
    got = service.summarise(s, s)
    assert got["requests"] == 0 and got["p99_ms"] is None and got["error_rate"] is None
    signals, reasons = service.judge({"status": "ok", **got}, LIMITS | {"min_requests": 0})
    assert not any(signals.values()) and not reasons


def test_the_thresholds_raise_their_signals_on_enough_requests():
    section = {"status": "ok", "requests": 100, "p50_ms": 3.0, "p99_ms": 400.0, "error_rate": 0.05}
    signals, reasons = service.judge(section | {"rejected_rate": 0.5}, LIMITS)
    assert signals == {"service_down": False, "latency": True, "errors": True, "rejected": False}
    assert reasons == ["p99 400.0 ms over 250 ms (100 requests)", "5xx rate 5.00% over 1.00% (100 requests)"]
    signals, _ = service.judge(section | {"requests": 19, "rejected_rate": 0.5}, LIMITS)  # too few to judge
    assert not any(signals.values())
    ok = {"status": "ok", "requests": 100, "p50_ms": 3.0, "p99_ms": 40.0, "error_rate": 0.0, "rejected_rate": 0.0}
    assert service.judge(ok, LIMITS) == (dict.fromkeys(service.SIGNALS, False), [])


def test_the_thresholds_live_in_monitoring_yaml():
    cfg = MonitorConfig.load()
    assert set(cfg.service) >= {"p99_ms", "p50_ms", "error_rate", "rejected_rate", "min_requests", "timeout_s"}
    assert not set(cfg.service) & set(service.SIGNALS)


# ---------------------------------------------------------------------------------------- check(): fail closed
def test_not_configured_is_said_and_raises_nothing(lake):
    got = service.check(lake, LIMITS, env={}, now=T0)
    assert got["status"] == "not configured" and not got["alert"] and not any(got["signals"].values())
    assert not lake.exists(*layout.SERVICE_SCRAPE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_service_is_down_not_quiet(lake):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    got = service.check(lake, LIMITS | {"timeout_s": 2}, env={"MLOPS_SERVE_URL": url}, now=T0)
    assert got["status"] == "unreachable" and got["url"] == url and "URLError" in got["error"]
    assert got["signals"]["service_down"] and got["alert"]
    assert got["reasons"] == [f"the service at {url} did not answer /metrics: {got['error']}"]
    assert not lake.exists(*layout.SERVICE_SCRAPE)  # the previous check's values stay the baseline


@pytest.mark.parametrize("text", ["<html>a login page</html>", "# HELP x a gauge\n# TYPE x gauge\nx 1\n"])
def test_text_that_is_not_the_service_metrics_is_an_error(text):
    with pytest.raises(ValueError):
        service.parse(text)


def test_check_keeps_the_counters_for_the_next_period(lake, monkeypatch):
    m = metrics()
    monkeypatch.setattr(service, "scrape", lambda url, token, timeout_s: samples(m))
    env = {"MLOPS_SERVE_URL": "http://svc:8000/"}
    load(m, "/predict", 200, 0.003, 30)
    first = service.check(lake, LIMITS, env=env, now=T0)
    assert first["status"] == "ok" and first["from"] is None and first["requests"] == 30 and "first" in first["note"]
    assert first["url"] == "http://svc:8000" and first["to"] == T0.isoformat() and not first["alert"]
    load(m, "/predict", 200, 0.3, 25)  # slow
    second = service.check(lake, LIMITS, env=env, now=T0 + dt.timedelta(days=1))
    assert second["from"] == T0.isoformat() and second["requests"] == 25 and not second["reset"]
    assert second["signals"]["latency"] and second["alert"] and second["reasons"][0].startswith("p99 ")
    saved = lake.read_json(*layout.SERVICE_SCRAPE)
    assert saved["at"] == (T0 + dt.timedelta(days=1)).isoformat() and saved["url"] == "http://svc:8000"
    # another URL: another service, whose counters the previous ones say nothing about
    third = service.check(lake, LIMITS, env={"MLOPS_SERVE_URL": "http://other:8000"}, now=T0)
    assert third["from"] is None and third["requests"] == 55
