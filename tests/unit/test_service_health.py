"""The service's health for monitoring (``monitor/service.py``), without a server: the quantile from histogram
buckets as Prometheus computes it, the period's deltas, a reset, the thresholds, the prediction log (spill depth,
lake failures, lost records), and the cases that must not read as "nothing to report" (not configured,
unreachable, not Prometheus' text)."""

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
LIMITS = {
    "p99_ms": 250,
    "p50_ms": None,
    "error_rate": 0.01,
    "rejected_rate": None,
    "min_requests": 20,
    "log_spilled": 0,
    "log_lake_failures": 0,
    "log_lost": 0,
}
T0 = dt.datetime(2013, 2, 1, 6, tzinfo=dt.UTC)


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


class Log:
    """What the metrics read of the service's prediction log."""

    pending = written = spilled = spilled_total = lost = lake_failures = 0


def metrics(log: Log | None = None) -> ServiceMetrics:
    return ServiceMetrics(lambda: (log, None, None))


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
    assert signals == {
        "service_down": False,
        "latency": True,
        "errors": True,
        "rejected": False,
        "prediction_log": False,
    }
    assert reasons == ["p99 400.0 ms over 250 ms (100 requests)", "5xx rate 5.00% over 1.00% (100 requests)"]
    signals, _ = service.judge(section | {"requests": 19, "rejected_rate": 0.5}, LIMITS)  # too few to judge
    assert not any(signals.values())
    ok = {"status": "ok", "requests": 100, "p50_ms": 3.0, "p99_ms": 40.0, "error_rate": 0.0, "rejected_rate": 0.0}
    assert service.judge(ok, LIMITS) == (dict.fromkeys(service.SIGNALS, False), [])


def test_the_thresholds_live_in_monitoring_yaml():
    cfg = MonitorConfig.load()
    assert set(cfg.service) >= {"p99_ms", "p50_ms", "error_rate", "rejected_rate", "min_requests", "timeout_s"}
    assert set(cfg.service) >= set(service.LIMITS)  # every threshold judge() reads is in the file
    assert cfg.service["log_spilled"] == 0 and cfg.service["log_lake_failures"] == 0 and cfg.service["log_lost"] == 0
    assert not set(cfg.service) & set(service.SIGNALS)


# ---------------------------------------------------------------------------------------- the prediction log
def test_the_prediction_log_is_read_from_metrics_and_judged_whatever_the_traffic():
    """A lake refusing one flight date fails no request: the spill depth (now), the lake's refusals and the lost
    records (since the last check) raise the prediction_log signal with no request at all in the period."""
    log = Log()
    log.lake_failures, log.lost = 3, 1  # before the previous check: not in the period
    m = metrics(log)
    before = samples(m)
    log.spilled, log.lake_failures, log.lost = 600, 10, 3
    got = service.summarise(samples(m), before)
    assert (got["log_spilled"], got["log_lake_failures"], got["log_lost"]) == (600, 7, 2) and not got["reset"]
    assert got["requests"] == 0
    signals, reasons = service.judge({"status": "ok", **got}, LIMITS)
    assert signals == dict.fromkeys(service.SIGNALS, False) | {"prediction_log": True}
    assert reasons == [
        "prediction log: 600 record(s) in the spill folder, over 0 (the lake refuses or is behind)",
        "prediction log: 7 write(s) refused by the lake, over 0 (since the last check)",
        "prediction log: 2 record(s) lost, over 0 (the lake and the local disk refused them)",
    ]
    off = LIMITS | {"log_spilled": None, "log_lake_failures": None, "log_lost": None}  # null: off
    assert service.judge({"status": "ok", **got}, off) == (dict.fromkeys(service.SIGNALS, False), [])
    # the spill drained: a gauge going down is not a restart, and a quiet log raises nothing
    after = samples(m)
    log.spilled = 0
    quiet = service.summarise(samples(m), after)
    assert not quiet["reset"] and (quiet["log_spilled"], quiet["log_lake_failures"], quiet["log_lost"]) == (0, 0, 0)
    assert service.judge({"status": "ok", **quiet}, LIMITS) == (dict.fromkeys(service.SIGNALS, False), [])


def test_a_service_without_the_log_metrics_is_not_judged_on_them():
    m = metrics()
    load(m, "/predict", 200, 0.003, 30)
    text = "\n".join(line for line in m.exposition().decode().splitlines() if "prediction_log" not in line)
    got = service.summarise(service.parse(text + "\n"), None)
    assert got["log_spilled"] is None and got["log_lake_failures"] is None and got["log_lost"] is None
    assert service.judge({"status": "ok", **got}, LIMITS) == (dict.fromkeys(service.SIGNALS, False), [])


def test_check_alerts_on_a_spilling_log(lake, monkeypatch):
    log = Log()
    m = metrics(log)
    monkeypatch.setattr(service, "scrape", lambda url, token, timeout_s: samples(m))
    env = {"MLOPS_SERVE_URL": "http://svc:8000"}
    assert not service.check(lake, LIMITS, env=env, now=T0)["alert"]
    log.spilled, log.lake_failures = 120, 4
    got = service.check(lake, LIMITS, env=env, now=T0 + dt.timedelta(days=1))
    assert got["alert"] and got["signals"]["prediction_log"] and got["log_spilled"] == 120
    assert got["thresholds"]["log_spilled"] == 0 and len(got["reasons"]) == 2


# ---------------------------------------------------------------------------------------- check(): fail closed
def test_not_configured_is_said_and_raises_nothing(lake):
    got = service.check(lake, LIMITS, env={}, now=T0)
    assert got["status"] == "not configured" and not got["alert"] and not any(got["signals"].values())
    assert not lake.exists(*layout.service_scrape())


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
    assert not lake.exists(*layout.service_scrape())  # the previous check's values stay the baseline


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
    saved = lake.read_json(*layout.service_scrape())
    assert saved["at"] == (T0 + dt.timedelta(days=1)).isoformat() and saved["url"] == "http://svc:8000"
    # another URL: another service, whose counters the previous ones say nothing about
    third = service.check(lake, LIMITS, env={"MLOPS_SERVE_URL": "http://other:8000"}, now=T0)
    assert third["from"] is None and third["requests"] == 55


# ---------------------------------------------------------------------------------------- at the boundaries
def test_exactly_min_requests_are_judged_and_a_value_at_its_limit_is_not_over_it():
    """Kills: ``requests < min_requests`` read as ``<=`` (exactly ``min_requests`` requests left unjudged) or as
    one fewer; a value equal to its threshold taken as over it."""
    n = LIMITS["min_requests"]
    slow = {"status": "ok", "p50_ms": 3.0, "p99_ms": 400.0, "error_rate": 0.05, "rejected_rate": 0.0}
    signals, reasons = service.judge(slow | {"requests": n}, LIMITS)
    assert signals["latency"] and signals["errors"], (signals, reasons)
    assert reasons == [f"p99 400.0 ms over 250 ms ({n} requests)", f"5xx rate 5.00% over 1.00% ({n} requests)"]
    signals, reasons = service.judge(slow | {"requests": n - 1}, LIMITS)
    assert not any(signals.values()) and not reasons
    at_limit = slow | {"requests": n, "p99_ms": float(LIMITS["p99_ms"]), "error_rate": LIMITS["error_rate"]}
    signals, reasons = service.judge(at_limit, LIMITS)
    assert not any(signals.values()) and not reasons


def test_the_p50_and_rejected_thresholds_raise_their_own_signals_and_reasons():
    limits = LIMITS | {"p50_ms": 20, "p99_ms": None, "error_rate": None, "rejected_rate": 0.1}
    section = {"status": "ok", "requests": 50, "p50_ms": 25.04, "p99_ms": 900.0, "error_rate": 0.5}
    signals, reasons = service.judge(section | {"rejected_rate": 0.125}, limits)
    assert signals["latency"] and signals["rejected"] and not signals["errors"]
    assert reasons == ["p50 25.0 ms over 20 ms (50 requests)", "rejected rate 12.50% over 10.00% (50 requests)"]


def test_the_latency_is_in_milliseconds():
    m = metrics()
    load(m, "/predict", 200, 0.003, 40)  # 40 in (2 ms, 5 ms]: the median's rank 20 is half-way, 3.5 ms
    got = service.summarise(samples(m), None)
    assert got["p50_ms"] == pytest.approx(3.5) and got["by_route"]["/predict"]["p50_ms"] == pytest.approx(3.5)
    assert got["p99_ms"] == pytest.approx(2 + 3 * 39.6 / 40)


def test_check_reads_the_environment_and_passes_the_token_and_timeout(lake, monkeypatch):
    m = metrics()
    load(m, "/predict", 200, 0.003, 5)
    asked = []
    record = lambda url, token, timeout_s: asked.append((url, token, timeout_s)) or samples(m)  # noqa: E731
    monkeypatch.setattr(service, "scrape", record)
    monkeypatch.delenv("MLOPS_SERVE_TOKEN_FILE", raising=False)
    monkeypatch.setenv("MLOPS_SERVE_URL", "http://SVC-BOX/")
    monkeypatch.setenv("MLOPS_SERVE_TOKEN", "a-token-for-the-health-check")
    got = service.check(lake, LIMITS, now=T0)  # no env given: the process's own
    assert got["status"] == "ok" and got["url"] == "http://SVC-BOX" and not got["reset"]
    assert got["note"] == "first check of this service: the period is its whole life so far"
    service.check(lake, LIMITS | {"timeout_s": 3}, now=T0)
    assert asked == [
        ("http://SVC-BOX", "a-token-for-the-health-check", 10.0),
        ("http://SVC-BOX", "a-token-for-the-health-check", 3.0),
    ]


def test_an_unreachable_check_keeps_the_period_start_and_a_short_error(lake, monkeypatch):
    m = metrics()
    load(m, "/predict", 200, 0.003, 5)
    tokens = []
    monkeypatch.setattr(service, "scrape", lambda url, token, timeout_s: tokens.append(token) or samples(m))
    monkeypatch.delenv("MLOPS_SERVE_TOKEN", raising=False)
    env = {"MLOPS_SERVE_URL": "http://svc:8000", "MLOPS_SERVE_TOKEN": "the-token-of-the-env-given"}
    service.check(lake, LIMITS, env=env, now=T0)
    assert tokens == ["the-token-of-the-env-given"]  # the env given, not the process's

    def refused(url, token, timeout_s):
        raise ConnectionError("refused " + "x" * 1000)

    monkeypatch.setattr(service, "scrape", refused)
    got = service.check(lake, LIMITS, env=env, now=T0 + dt.timedelta(days=1))
    assert got["status"] == "unreachable" and got["from"] == T0.isoformat()
    assert got["error"].startswith("ConnectionError: refused xxx") and len(got["error"]) == 500


def test_a_restart_is_said_in_the_note(lake, monkeypatch):
    m = metrics()
    load(m, "/predict", 200, 0.003, 30)
    monkeypatch.setattr(service, "scrape", lambda url, token, timeout_s: samples(m))
    env = {"MLOPS_SERVE_URL": "http://svc:8000"}
    service.check(lake, LIMITS, env=env, now=T0)
    m = metrics()  # a new process
    load(m, "/predict", 200, 0.003, 3)
    got = service.check(lake, LIMITS, env=env, now=T0 + dt.timedelta(days=1))
    assert got["reset"] and got["requests"] == 3
    assert got["note"] == (
        "the service restarted since the previous check (its counters were reset): the period is the new "
        "process's life so far"
    )


def test_a_histogram_without_infinity_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^a histogram's buckets end with \+Inf$"):
        service.quantile(0.5, {1: 3, 2: 4})


def test_one_request_has_its_latency():
    m = metrics()
    load(m, "/predict", 200, 0.003, 1)
    got = service.summarise(samples(m), None)
    assert got["requests"] == 1 and got["p50_ms"] == pytest.approx(3.5) and got["p99_ms"] == pytest.approx(4.97)
    assert [(r["arm"], r["requests"], r["p50_ms"]) for r in got["by_arm"]] == [("champion", 1, pytest.approx(3.5))]
    nothing = {"requests": 0, "errors": 0, "rejected": 0, "p50_ms": None, "p99_ms": None}
    assert got["by_route"]["/predict/batch"] == nothing
    quiet = service.summarise(samples(metrics()), None)
    assert (quiet["p50_ms"], quiet["p99_ms"]) == (None, None)


def test_an_arm_without_requests_in_the_period_is_not_listed():
    m = metrics()
    load(m, "/predict/batch", 200, 0.3, 5, arm="challenger")  # before the previous check only
    before = samples(m)
    load(m, "/predict", 200, 0.003, 10)
    got = service.summarise(samples(m), before)
    assert [(r["route"], r["arm"], r["requests"]) for r in got["by_arm"]] == [("/predict", "champion", 10)]


def test_text_that_is_not_the_service_metrics_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^not Prometheus' text format: ValueError: invalid metric name"):
        service.parse("<html>a login page</html>")
    with pytest.raises(ValueError, match=r"^no mlops_serve_requests_total in the exposition: not the prediction"):
        service.parse("# HELP x a gauge\n# TYPE x gauge\nx 1\n")
