"""The prediction service's own telemetry, in Prometheus' text format at ``GET /metrics`` (prometheus-client).

One registry per service (two services in one process, as in the tests, never share a counter):

- ``mlops_serve_requests_total{route,status}`` and ``mlops_serve_request_duration_seconds{route,status}``
  (a histogram): every HTTP request, by route (``/predict``, ``/predict/batch``, ``/health``, ``/versions``,
  ``/metrics``, ``/docs``, ``/openapi.json``; any other path is ``other``) and status code (499: the client went
  away before its body was read); the duration runs from the request's arrival to its last byte sent;
- ``mlops_serve_prediction_duration_seconds{route,arm,version}`` (a histogram): the duration of each answered
  prediction request (200), by the arm and model version that scored it: a single flight once, a batch once per
  arm and version that scored flights in it, with the whole batch's duration (a batch split between the arms
  counts under both); monitoring's daily report reads its p50 and p99 per arm and version from it;
- ``mlops_serve_predictions_total{arm,version}``: flights answered, by arm (``champion``, ``challenger``) and
  model version (flights scored in the shadow are not in it);
- ``mlops_serve_prediction_errors_total{arm,version}``: scoring failures (the model or its encoder raised), by arm
  (``champion``, ``challenger``, ``shadow``) and model version: a request whose champion or challenger fails is
  counted here and then fails as before (500, the server's answer); a failure in the shadow is counted and logged,
  never seen by the client; a child is made at 0 for each arm and version as it first answers or shadows, so that
  a rate over it exists before the first failure;
- ``mlops_serve_shadow_duration_seconds{version}`` (a histogram): while a canary of the challenger runs, the time
  its shadow scoring of one request's champion-answered flights took (encoding and scoring, in the background
  worker, after the answer was sent; the wait in the queue not included);
- ``mlops_serve_shadow_dropped_total``: shadow jobs (one request's champion-answered flights each) dropped because
  the shadow queue was full: the request never waits for it;
- ``mlops_serve_rejected_total{route,status,reason}``: bodies refused as invalid (422) or too large (413), by the
  reason the answer names (``validation``, ``pattern``, ``date``, ``too_long``, ``too_large``, ...);
- ``mlops_serve_prediction_log_pending_rows``: records waiting in memory (the log's queue depth);
  ``mlops_serve_prediction_log_spill_rows``: records in the spill folder now, waiting for the lake;
  ``mlops_serve_prediction_log_spilled_rows_total``, ``..._written_rows_total``, ``..._lost_rows_total``,
  ``..._lake_failures_total``;
- ``mlops_serve_model_refresh_failures_total``; ``mlops_serve_model_refresh_ok`` (1 when the last refresh of
  the aliases worked); ``mlops_serve_model_info{arm,version}`` (1 per serving arm);
  ``mlops_serve_canary_share``;
- ``mlops_serve_connections_refused_total{reason}``: connections the server refused or closed before they
  finished a request (``serve.server``): ``limit`` (every open connection busy), ``evicted`` (the one waiting
  longest for a request, closed to make room for a new one), ``header_timeout``, ``header_too_large``,
  ``body_timeout``, ``idle`` (kept alive with no new request); ``mlops_serve_connections_open``;
- ``process_*``: the process's CPU seconds, resident and virtual memory, open files, start time (the client's
  default process collector; Linux only).

The request path pays one dictionary look-up and two locked additions per request (one more per arm and version
that answered it): the labelled children are made once and kept. Shadow scoring is counted by its worker thread,
off the request path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..core.predictions import SHADOW
from .server import REASONS

ROUTES = ("/predict", "/predict/batch", "/health", "/versions", "/metrics", "/docs", "/openapi.json")
# from 0.5 ms (one flight on a warm service) to 10 s (a batch at the body limit)
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
PREFIX = "mlops_serve_"


def route_of(path: str) -> str:
    """The route label of a request path: one of ``ROUTES``, else ``other`` (never the raw path: a client would
    make as many series as it sends paths)."""
    return path if path in ROUTES else "other"


class ServiceMetrics:
    """The service's metrics and the cheap calls that feed them. ``state``: () -> (the prediction log or None,
    the served arms or None, whether the last refresh worked), read at each scrape."""

    def __init__(self, state: Callable[[], tuple[Any, Any, bool | None]]):
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            PREFIX + "requests",
            "HTTP requests answered, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self._duration = Histogram(
            PREFIX + "request_duration_seconds",
            "time from a request's arrival to its last byte sent, by route and status",
            ["route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._prediction_duration = Histogram(
            PREFIX + "prediction_duration_seconds",
            "time from an answered prediction request's arrival to its last byte sent, by route and the arm and "
            "model version that scored it (a batch split between the arms counts under both)",
            ["route", "arm", "version"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._predictions = Counter(
            PREFIX + "predictions",
            "flights answered, by arm and model version (flights scored in the shadow are not in it)",
            ["arm", "version"],
            registry=self.registry,
        )
        self._errors = Counter(
            PREFIX + "prediction_errors",
            "scoring failures, by arm (champion, challenger, shadow) and model version",
            ["arm", "version"],
            registry=self.registry,
        )
        self._shadow_duration = Histogram(
            PREFIX + "shadow_duration_seconds",
            "time the challenger's shadow scoring of one request's champion-answered flights took, by version",
            ["version"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._shadow_dropped = Counter(
            PREFIX + "shadow_dropped",
            "shadow jobs (one request's champion-answered flights) dropped because the shadow queue was full",
            registry=self.registry,
        )
        self._rejected = Counter(
            PREFIX + "rejected",
            "request bodies refused as invalid (422) or too large (413), by route, status and reason",
            ["route", "status", "reason"],
            registry=self.registry,
        )
        self._refresh_failures = Counter(
            PREFIX + "model_refresh_failures",
            "refreshes of the aliases and the rollout that failed (what was loaded kept serving)",
            registry=self.registry,
        )
        refused = Counter(
            PREFIX + "connections_refused",
            "connections the server refused or closed before they finished a request, by reason",
            ["reason"],
            registry=self.registry,
        )
        self._refused = {reason: refused.labels(reason) for reason in REASONS}
        self._open_connections: Callable[[], int] = lambda: 0
        Gauge(PREFIX + "connections_open", "HTTP connections open now", registry=self.registry).set_function(
            lambda: self._open_connections()
        )
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._predicted: dict[tuple[str, str], Any] = {}
        self._failed: dict[tuple[str, str], Any] = {}
        self._shadowed: dict[str, Any] = {}
        self._served: dict[tuple[str, str, str], Any] = {}
        ProcessCollector(registry=self.registry)
        self.registry.register(_StateCollector(state))

    # the request path ------------------------------------------------------------------------------------------
    def observe(self, route: str, status: int, seconds: float) -> None:
        children = self._children.get((route, status))
        if children is None:
            label = str(status)
            children = self._children[(route, status)] = (
                self._requests.labels(route, label),
                self._duration.labels(route, label),
            )
        children[0].inc()
        children[1].observe(seconds)

    def predicted(self, arm: str, version: str, n: int) -> None:
        child = self._predicted.get((arm, version))
        if child is None:
            child = self._predicted[(arm, version)] = self._predictions.labels(arm, version)
            self._failure_child(arm, version)  # its error counter shows, at 0, from the arm's first answer on
        child.inc(n)

    def prediction_failed(self, arm: str, version: str) -> None:
        """A scoring failure of ``arm`` (``champion``, ``challenger``, ``shadow``) and ``version``."""
        self._failure_child(arm, version).inc()

    def _failure_child(self, arm: str, version: str):
        child = self._failed.get((arm, version))
        if child is None:
            child = self._failed[(arm, version)] = self._errors.labels(arm, version)
        return child

    def served(self, route: str, arms: tuple[tuple[str, str], ...], seconds: float) -> None:
        """An answered prediction request: its duration, once per (arm, version) that scored flights in it."""
        for arm, version in arms:
            child = self._served.get((route, arm, version))
            if child is None:
                child = self._served[(route, arm, version)] = self._prediction_duration.labels(route, arm, version)
            child.observe(seconds)

    # shadow scoring: a dropped job on the request path, the rest in its worker ------------------------------------
    def shadow_scored(self, version: str, seconds: float) -> None:
        child = self._shadowed.get(version)
        if child is None:
            child = self._shadowed[version] = self._shadow_duration.labels(version)
            self._failure_child(SHADOW, version)
        child.observe(seconds)

    def shadow_dropped(self) -> None:
        self._shadow_dropped.inc()

    def rejected(self, route: str, status: int, reason: str) -> None:
        self._rejected.labels(route, str(status), reason).inc()

    def refresh_failed(self) -> None:
        self._refresh_failures.inc()

    # the server (serve.server) -----------------------------------------------------------------------------------
    def connection_refused(self, reason: str) -> None:
        self._refused[reason].inc()

    def count_open_connections(self, count: Callable[[], int]) -> None:
        self._open_connections = count

    # the scrape --------------------------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """What the prediction log and the model store hold, read when scraped (nothing on the request path)."""

    def __init__(self, state: Callable[[], tuple[Any, Any, bool | None]]):
        self._state = state

    def collect(self):
        log, arms, refresh_ok = self._state()
        log_name = PREFIX + "prediction_log_"
        yield GaugeMetricFamily(
            log_name + "pending_rows", "prediction records waiting in memory", value=log.pending if log else 0
        )
        yield GaugeMetricFamily(
            log_name + "spill_rows",
            "prediction records in the local spill folder, waiting for the lake",
            value=log.spilled if log else 0,
        )
        for name, doc, attr in (
            ("spilled_rows", "prediction records ever spilled to local disk", "spilled_total"),
            ("written_rows", "prediction records written to the lake", "written"),
            ("lost_rows", "prediction records neither written nor spilled (lake and local disk refused)", "lost"),
            ("lake_failures", "writes of the prediction log the lake refused", "lake_failures"),
        ):
            yield CounterMetricFamily(log_name + name, doc, value=getattr(log, attr) if log else 0)
        yield GaugeMetricFamily(
            PREFIX + "model_refresh_ok",
            "1 when the last refresh of the aliases worked, 0 when it failed (stale), -1 before the first",
            value=-1 if refresh_ok is None else int(bool(refresh_ok)),
        )
        info = GaugeMetricFamily(PREFIX + "model_info", "the model versions serving, by arm", labels=["arm", "version"])
        share = 0.0
        if arms is not None:
            for arm in ("champion", "challenger"):
                model = getattr(arms, arm)
                if model is not None:
                    info.add_metric([arm, model.version], 1)
            share = arms.canary_share if arms.challenger is not None else 0.0
        yield info
        yield GaugeMetricFamily(PREFIX + "canary_share", "the share of flights routed to the challenger", value=share)
