"""The prediction service's health for monitoring: its request latency (p50, p99), error rate (5xx) and rejected
rate (4xx) since the last check, and its prediction log (records in the spill folder now, writes the lake refused
and records lost since the last check), read from its Prometheus ``/metrics`` (``serve/metrics.py``), judged
against the ``service:`` thresholds of ``monitoring.yaml``. A crossed threshold raises an alert (Slack); it never
retrains. The log is judged whatever the traffic: a lake refusing a flight date holds records back with no
request failing.

The period is "since the last check" (its wall-clock ``from`` and ``to`` are in the section): the service's
counters and histograms are cumulative since it started, and monitoring keeps no time series of them, so a check
reads them and subtracts the previous check's values (kept in the lake, ``layout.service_scrape()``). Checks run
once per ``monitor_model`` run, after each day's ingestion; in a replay each day's traffic reaches the service
before that day's outcomes are ingested, so the period holds that day's requests. A restarted service starts its
counters again from zero: a counter lower than before (or another process start time, or another URL) is a
reset, and the current values are the period's whole delta (``reset`` says so; what the old process served after
the previous check is not counted).

Fail closed, never read an error as absent: ``MLOPS_SERVE_URL`` unset is ``{"status": "not configured"}`` and
raises nothing; set but unreachable, answering an error, or not Prometheus' text is ``{"status": "unreachable",
"error": ...}`` with the ``service_down`` signal up (an alert), and the previous check's values kept for the next.

The scrape, the subtraction and the latency quantiles are ``core.telemetry``'s (the rollout's stages read the
same exposition).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections import defaultdict
from typing import Any

from ..core import layout, telemetry
from ..core.config import serve_token
from ..core.lake import Lake
from ..core.telemetry import START, Samples, quantile

PREDICT_ROUTES = ("/predict", "/predict/batch")
REQUESTS = telemetry.REQUESTS
DURATION = "mlops_serve_request_duration_seconds_bucket"
SERVED = "mlops_serve_prediction_duration_seconds_bucket"
LOG_SPILL = "mlops_serve_prediction_log_spill_rows"  # a gauge: records in the spill folder now
LOG_FAILURES = "mlops_serve_prediction_log_lake_failures_total"
LOG_LOST = "mlops_serve_prediction_log_lost_rows_total"
GAUGES = (START, LOG_SPILL)  # read as they are, never subtracted nor taken for a reset
SIGNALS = ("service_down", "latency", "errors", "rejected", "prediction_log")
LIMITS = (  # the threshold keys of monitoring.yaml's service: section that judge()
    "p50_ms",
    "p99_ms",
    "error_rate",
    "rejected_rate",
    "min_requests",
    "log_spilled",
    "log_lake_failures",
    "log_lost",
)
WANTED = (REQUESTS, DURATION, SERVED, START, LOG_SPILL, LOG_FAILURES, LOG_LOST)


def parse(text: str) -> Samples:
    """The samples monitoring reads from an exposition: requests, the two latency histograms' buckets, the
    process's start time, the prediction log's counters (``core.telemetry.parse``)."""
    return telemetry.parse(text, WANTED)


def scrape(url: str, token: str | None = None, timeout_s: float = 10.0) -> Samples:
    """GET ``url``/metrics and parse it (``core.telemetry.scrape``)."""
    return telemetry.scrape(url, WANTED, token, timeout_s)


def _delta(current: Samples, previous: Samples | None) -> tuple[Samples, bool]:
    return telemetry.delta(current, previous, GAUGES)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _latency(buckets: dict[float, float] | None) -> dict[str, Any]:
    if not buckets or buckets.get(math.inf, 0) <= 0:
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": _ms(quantile(0.5, buckets)), "p99_ms": _ms(quantile(0.99, buckets))}


def summarise(current: Samples, previous: Samples | None) -> dict[str, Any]:
    """The period's numbers: requests on the prediction routes, their p50/p99 (every status: what callers
    waited), 5xx and 4xx counts and rates, per route, and p50/p99 per route, arm and version of the answered
    ones."""
    delta, reset = _delta(current, previous)
    by_route: dict[str, dict[str, Any]] = {}
    for route in PREDICT_ROUTES:
        counts = {
            dict(lab)["status"]: v for (n, lab), v in delta.items() if n == REQUESTS and dict(lab)["route"] == route
        }
        by_route[route] = {
            "requests": int(sum(counts.values())),
            "errors": int(sum(v for s, v in counts.items() if s.startswith("5"))),
            "rejected": int(sum(v for s, v in counts.items() if s.startswith("4"))),
        }
    lat = telemetry.histogram(delta, DURATION, lambda lab: (lab["route"],) if lab["route"] in PREDICT_ROUTES else None)
    both: dict[float, float] = defaultdict(float)
    for (route,), b in lat.items():
        by_route[route] |= _latency(b)
        for le, v in b.items():
            both[le] += v
    for row in by_route.values():
        row.setdefault("p50_ms", None)
        row.setdefault("p99_ms", None)
    served = telemetry.histogram(
        delta,
        SERVED,
        lambda lab: (lab["route"], lab["arm"], lab["version"]) if lab["route"] in PREDICT_ROUTES else None,
    )
    by_arm = [
        {"route": r, "arm": a, "version": v, "requests": int(b.get(math.inf, 0)), **_latency(b)}
        for (r, a, v), b in sorted(served.items())
        if b.get(math.inf, 0) > 0
    ]
    n = sum(r["requests"] for r in by_route.values())
    errors = sum(r["errors"] for r in by_route.values())
    rejected = sum(r["rejected"] for r in by_route.values())

    def log_value(name: str) -> int | None:  # None: a service that does not say (an older one)
        return int(delta[(name, ())]) if (name, ()) in delta else None

    return {
        "requests": n,
        **_latency(both),
        "errors": errors,
        "rejected": rejected,
        "error_rate": errors / n if n else None,
        "rejected_rate": rejected / n if n else None,
        "by_route": by_route,
        "by_arm": by_arm,
        "log_spilled": log_value(LOG_SPILL),
        "log_lake_failures": log_value(LOG_FAILURES),
        "log_lost": log_value(LOG_LOST),
        "reset": reset,
    }


def judge(section: dict[str, Any], thresholds: dict[str, Any]) -> tuple[dict[str, bool], list[str]]:
    """The service's signals and their reasons. Unreachable: ``service_down``. The prediction log is judged on
    every check; latency and rates only on ``min_requests`` requests or more in the period (none: no latency, no
    signal); a null threshold is off."""
    signals = dict.fromkeys(SIGNALS, False)
    reasons: list[str] = []
    if section["status"] == "unreachable":
        signals["service_down"] = True
        reasons.append(f"the service at {section.get('url')} did not answer /metrics: {section.get('error')}")
        return signals, reasons
    if section["status"] != "ok":
        return signals, reasons
    for key, what in (
        ("log_spilled", "prediction log: {} record(s) in the spill folder, over {} (the lake refuses or is behind)"),
        ("log_lake_failures", "prediction log: {} write(s) refused by the lake, over {} (since the last check)"),
        ("log_lost", "prediction log: {} record(s) lost, over {} (the lake and the local disk refused them)"),
    ):
        limit, got = thresholds.get(key), section.get(key)
        if limit is not None and got is not None and got > limit:
            signals["prediction_log"] = True
            reasons.append(what.format(got, limit))
    if section["requests"] < (thresholds.get("min_requests") or 0):
        return signals, reasons
    for key, signal, name, fmt, fmt_limit in (
        ("p50_ms", "latency", "p50", "{:.1f} ms", "{:g} ms"),
        ("p99_ms", "latency", "p99", "{:.1f} ms", "{:g} ms"),
        ("error_rate", "errors", "5xx rate", "{:.2%}", "{:.2%}"),
        ("rejected_rate", "rejected", "rejected rate", "{:.2%}", "{:.2%}"),
    ):
        limit, got = thresholds.get(key), section.get(key)
        if limit is not None and got is not None and got > limit:
            signals[signal] = True
            reasons.append(f"{name} {fmt.format(got)} over {fmt_limit.format(limit)} ({section['requests']} requests)")
    return signals, reasons


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def check(
    lake: Lake, thresholds: dict[str, Any], env: dict[str, str] | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Scrape the service named by ``MLOPS_SERVE_URL``, summarise the period since the previous check, judge it,
    and keep this check's values in the lake for the next (only when the scrape worked). Returns the section the
    daily report shows: ``status`` ("ok", "not configured", "unreachable"), the numbers, ``signals``, ``reasons``
    and ``alert`` (a signal is up)."""
    env = os.environ if env is None else env
    now = now or _now()
    url = (env.get("MLOPS_SERVE_URL") or "").strip().rstrip("/")
    limits = {k: thresholds.get(k) for k in LIMITS}
    base: dict[str, Any] = {"url": url or None, "to": now.isoformat(), "thresholds": limits}
    if not url:
        section = base | {"status": "not configured"}
    else:
        previous = lake.read_json(*layout.service_scrape()) if lake.exists(*layout.service_scrape()) else None
        if previous is not None and previous.get("url") != url:
            previous = None  # another service: its counters say nothing about this one's
        try:
            current = scrape(url, serve_token(env), float(thresholds.get("timeout_s") or 10.0))
        except Exception as exc:  # unreachable, an error status, a timeout, not the service's metrics
            section = base | {
                "status": "unreachable",
                "error": f"{type(exc).__name__}: {exc}"[:500],
                "from": previous["at"] if previous else None,
            }
        else:
            numbers = summarise(current, telemetry.decode(previous["samples"]) if previous else None)
            section = base | {"status": "ok", "from": previous["at"] if previous else None} | numbers
            if previous is None:
                section["note"] = "first check of this service: the period is its whole life so far"
            elif numbers["reset"]:
                section["note"] = (
                    "the service restarted since the previous check (its counters were reset): the period is the "
                    "new process's life so far"
                )
            lake.write_json(
                {"url": url, "at": now.isoformat(), "samples": telemetry.encode(current)}, *layout.service_scrape()
            )
    signals, reasons = judge(section, limits)
    return section | {"signals": signals, "reasons": reasons, "alert": any(signals.values())}
