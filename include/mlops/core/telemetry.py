"""The prediction service's Prometheus ``/metrics`` (``serve/metrics.py``), as its readers take it: monitoring's
daily service check (``monitor.service``) and the rollout's stages (``deploy.signals``). A scrape is kept as
samples, {(metric name, sorted labels): value}; the counters and histograms are cumulative since the service's
process started, so a reader subtracts an earlier scrape (``delta``: a counter lower than before, or another
process start time, is a restart, and then the current values are the whole period).

Latency quantiles are interpolated within the histogram's buckets as Prometheus' ``histogram_quantile`` does
(linear within a bucket, the lowest bucket from 0, a rank in the ``+Inf`` bucket answered by the highest finite
bound): with the service's buckets (0.5 ms .. 10 s) a quantile is accurate to its bucket.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from .config import serve_auth

REQUESTS = "mlops_serve_requests_total"  # every service exposes it: the sign that it is the service's /metrics
START = "process_start_time_seconds"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str, wanted: Iterable[str]) -> Samples:
    """The samples named ``wanted`` in an exposition. Raises ValueError on text that is not Prometheus' format or
    lacks the service's request counter."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(wanted)
    out: Samples = {}
    families = set()
    try:
        for family in text_string_to_metric_families(text):
            families.add(family.name)
            for s in family.samples:
                if s.name in wanted:
                    out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    except Exception as exc:  # the parser raises ValueError, IndexError, ... on text of another kind
        raise ValueError(f"not Prometheus' text format: {type(exc).__name__}: {exc}") from exc
    if REQUESTS.removesuffix("_total") not in families:
        raise ValueError(f"no {REQUESTS} in the exposition: not the prediction service's /metrics")
    return out


def scrape(url: str, wanted: Iterable[str], token: str | None = None, timeout_s: float = 10.0) -> Samples:
    """GET ``url``/metrics (open; the bearer token is sent anyway when there is one) and parse it."""
    import urllib.request

    req = urllib.request.Request(url.rstrip("/") + "/metrics", headers=serve_auth(token))
    with urllib.request.urlopen(req, timeout=timeout_s) as r:  # noqa: S310 - the operator's own service URL
        return parse(r.read().decode("utf-8"), wanted)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of a histogram given as {upper bound: cumulative count} (``+Inf`` included), as
    Prometheus' ``histogram_quantile``; None when it counts nothing."""
    bounds = sorted(buckets)
    if not bounds or bounds[-1] != math.inf:
        raise ValueError("a histogram's buckets end with +Inf")
    total = buckets[math.inf]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if b == math.inf:
                return prev_bound  # the highest finite bound: nothing better is known
            if count == prev_count:  # q = 0
                return prev_bound
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return prev_bound


def delta(current: Samples, previous: Samples | None, gauges: Iterable[str] = (START,)) -> tuple[Samples, bool]:
    """current - previous per counter, the ``gauges`` as they are now, and whether the counters were reset (a
    counter lower than before, or another process start time: then the current values)."""
    gauges = set(gauges) | {START}
    if previous is None:
        return dict(current), False
    counters = [k for k in current if k[0] not in gauges]
    reset = any(current[k] < previous.get(k, 0.0) for k in counters) or any(
        k[0] == START and k in previous and current[k] != previous[k] for k in current
    )
    if reset:
        return dict(current), True
    return {k: current[k] - previous.get(k, 0.0) for k in counters} | {
        k: v for k, v in current.items() if k[0] in gauges and k[0] != START
    }, False


def histogram(samples: Samples, name: str, keep: Callable[[dict[str, str]], Any]) -> dict[Any, dict[float, float]]:
    """A histogram's buckets summed per group: {group: {le: count}}; ``keep(labels)`` names a sample's group or
    None (left out)."""
    out: dict[Any, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for (n, labels), v in samples.items():
        if n != name:
            continue
        lab = dict(labels)
        group = keep(lab)
        if group is not None:
            out[group][float(lab["le"])] += v
    return out


def total(samples: Samples, name: str, where: Callable[[dict[str, str]], bool] = lambda lab: True) -> float:
    """The sum of a metric's samples whose labels ``where`` accepts."""
    return sum(v for (n, labels), v in samples.items() if n == name and where(dict(labels)))


def encode(samples: Samples) -> list:
    """Samples as JSON (kept in the lake)."""
    return [[name, dict(labels), v] for (name, labels), v in sorted(samples.items())]


def decode(rows: list) -> Samples:
    return {(name, tuple(sorted(labels.items()))): float(v) for name, labels, v in rows}
