"""The challenger's operational signals in the rollout's current stage (``ramp.Signals``), from two sources:

- the prediction service's ``/metrics`` (``core.telemetry``; ``MLOPS_SERVE_URL``), less its values when the stage
  began (the rollout's ``baseline``): per arm, the requests scored, their p99 latency (the challenger's requests
  while it serves a share; in the shadow stage the shadow's own scoring time) and the scoring failures; the
  service's resident memory now;
- the prediction log: the scores the challenger gave since the rollout began (served, or in the shadow) against
  the registry's version rescoring the same inputs offline (the request fields the log keeps): the share that
  agree within ``TOLERANCE``. Whether clients send the features curation makes later is monitoring's skew check.

Fail closed: an unset URL, a service that does not answer, or a restarted one (its counters no longer cover the
stage) give signals with ``error`` set: the stage holds; nothing is ever read as zero.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .. import kinds
from ..core import predictions, telemetry
from ..core.config import serve_token
from ..core.lake import Lake, as_date
from ..core.schema import dataset, model, request_fields
from . import curated
from .ramp import Signals

TOLERANCE = 1e-6
AGREEMENT_ROWS = 5000  # the challenger's latest scores rescored at each look (every look reads the log again)
SERVED = "mlops_serve_prediction_duration_seconds_bucket"  # {route, arm, version}: answered requests
SHADOW = "mlops_serve_shadow_duration_seconds_bucket"  # {version}: one request's shadow scoring
ERRORS = "mlops_serve_prediction_errors_total"  # {arm, version}
MEMORY = "process_resident_memory_bytes"
WANTED = (telemetry.REQUESTS, SERVED, SHADOW, ERRORS, MEMORY, telemetry.START)
GAUGES = (MEMORY,)

Scrape = Callable[[], telemetry.Samples]


def service_scrape(env: dict[str, str] | None = None, timeout_s: float = 10.0) -> Scrape:
    """The scrape of the service named by ``MLOPS_SERVE_URL``; raises when it is unset or does not answer."""
    env = os.environ if env is None else env
    url = (env.get("MLOPS_SERVE_URL") or "").strip()

    def scrape() -> telemetry.Samples:
        if not url:
            raise RuntimeError("MLOPS_SERVE_URL is not set: the rollout cannot read the service's signals")
        return telemetry.scrape(url, WANTED, serve_token(env), timeout_s)

    return scrape


def baseline(scrape: Scrape) -> list | None:
    """The service's counters now, kept with a stage as it begins; None when the service does not answer."""
    try:
        return telemetry.encode(scrape())
    except Exception:  # noqa: BLE001 - the next look takes them (the stage holds until then)
        return None


def _arm(delta: telemetry.Samples, arm: str, version: str) -> dict[str, Any]:
    def mine(lab: dict[str, str]) -> bool:
        return lab.get("version") == version and (arm == "shadow" or lab.get("arm") == arm)

    name = SHADOW if arm == "shadow" else SERVED
    buckets = telemetry.histogram(delta, name, lambda lab: arm if mine(lab) else None).get(arm, {})
    answered = int(buckets.get(math.inf, 0))
    failed = int(telemetry.total(delta, ERRORS, lambda lab: lab.get("arm") == arm and lab.get("version") == version))
    n = answered + failed
    p99 = telemetry.quantile(0.99, buckets) if answered else None
    return {
        "requests": n,
        "failed": failed,
        "p99_ms": None if p99 is None else p99 * 1000,
        "error_rate": failed / n if n else None,
    }


def operational(scrape: Scrape, rollout: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Per arm numbers since the stage began, the memory, and why they cannot be used (or None)."""
    try:
        current = scrape()
    except Exception as exc:  # noqa: BLE001 - unreachable, an error status, not the service's metrics
        return {}, f"{type(exc).__name__}: {exc}"[:300]
    base = rollout.get("baseline")
    if base is None:
        return {}, "the service's counters at the stage's start are not known yet (taken at this look)"
    delta, reset = telemetry.delta(current, telemetry.decode(base), GAUGES)
    if reset:
        return {}, "the service restarted during the stage: its counters no longer cover it"
    version, champion = str(rollout["version"]), str(rollout.get("champion"))
    arms = {
        "champion": _arm(delta, "champion", champion),
        "challenger": _arm(delta, "challenger", version),
        "shadow": _arm(delta, "shadow", version),
    }
    memory = telemetry.total(current, MEMORY)
    return {"arms": arms, "memory_mb": memory / 2**20 if memory else None}, None


def logged_inputs(rows: pd.DataFrame) -> pd.DataFrame:
    """The inputs the service scored each logged row on: the request fields the log keeps (a field the request
    did not carry: missing), the event time (a date event time that is a key column is not logged: the row's
    logged date names it), then the event-time features derived from them (``curated.features``)."""
    m = model()
    spec = dataset(m.dataset)
    fields = [f.column.name for f in request_fields(model=m)]
    out = rows.reindex(columns=fields)
    event = spec.event_time
    if event and event not in rows:
        col = spec.columns[event]
        if col.type != "date":
            raise ValueError(
                f"the prediction log keeps no {event!r} (the event time, a key column): its rows cannot be rescored"
            )
        out[event] = [spec.date_text(as_date(d)) for d in rows[m.date_field]]
    return curated.features(out)


def agreement(lake: Lake, rollout: dict[str, Any]) -> tuple[float | None, int]:
    """The share of the challenger's scores since the rollout began (served while it serves a share, and in the
    shadow; the latest ``AGREEMENT_ROWS``) that equal the registry's version rescoring the same inputs offline
    (the request fields the log keeps: ``logged_inputs``), and how many were rescored. It checks the serving
    path (decoding, encoding, the loaded model), not the client: a client's features that differ from those
    curation makes later are monitoring's serving skew, not a fault of the version. Cumulative, not per stage:
    a path that disagrees at a later stage still pulls the share under its limit (the limit is strict)."""
    version = str(rollout["version"])
    first = as_date(rollout["from_date"])
    dates = [d for d in predictions.prediction_dates(lake) if d >= first]
    parts = [
        predictions.predictions(lake, [d], {version}, since=rollout["started_at"], shadow=shadow)
        for d in dates
        for shadow in (False, True)
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return None, 0
    scored = pd.concat(parts, ignore_index=True).sort_values("predicted_at", kind="stable")
    scored = scored.drop_duplicates(model().key_field)  # a flight once, by the challenger's first score of it
    scored = scored.tail(AGREEMENT_ROWS)  # the latest: a look's cost stays bounded
    rescored = kinds.load_version(version).predict(logged_inputs(scored))
    same = np.abs(rescored - scored["score"].to_numpy(dtype=float)) <= TOLERANCE
    return float(same.mean()), int(len(scored))


def read(lake: Lake, rollout: dict[str, Any], scrape: Scrape) -> Signals:
    """The current stage's signals (``ramp.Signals``)."""
    numbers, error = operational(scrape, rollout)
    share = float(rollout.get("canary_share", 0.0))
    if error:
        return Signals(error=error)
    arm = numbers["arms"]["shadow" if share <= 0 else "challenger"]
    agree, rescored = agreement(lake, rollout)
    return Signals(
        requests=arm["requests"],
        p99_ms=arm["p99_ms"],
        error_rate=arm["error_rate"],
        memory_mb=numbers["memory_mb"],
        agreement=agree,
        rescored=rescored,
        by_arm=numbers["arms"],
    )
