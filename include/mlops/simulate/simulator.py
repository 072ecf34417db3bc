"""The upstream simulator driven as a whole: a range of days published into ``landing/``, a fault injected on
chosen days, and each day's scheduled flights replayed as prediction requests before its outcomes are
published. It is the stand-in for a real upstream system (``simulate_upstream`` runs it from the Airflow UI; the
demo driver does the same day by day); a real deployment has its own upstream and never runs it.

The days and their faults are planned by ``plan`` (which names the fault kinds and the replayed data sets' days); the drops
themselves are written by ``upstream.Upstream``, the requests sent by ``traffic.replay``, both imported when a day
is simulated (the scheduled replay's turn, ``replay_waits``, needs neither).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .plan import Day, replayed

SERVE_URL_ENV = "MLOPS_SERVE_URL"  # the prediction service the traffic goes to; unset: no traffic

log = logging.getLogger(__name__)


class TrafficFailed(RuntimeError):
    """The prediction service answered some of a day's requests with an error: nothing is published for that day
    (its outcomes would come in without the predictions made before them)."""


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
    fault_dataset: str | None = None,
    replay: bool = False,
    service: Service | None = None,
    delay_s: float = 5.0,
    failures: int = 2,
) -> dict[str, Any]:
    """One day as the upstream system and the clients would make it: with ``replay``, the day's rows of the scored
    data set sent to the prediction service first (before their outcome is known), then every replayed data set's
    drop of the day (the flights and the weather) written into ``landing/`` (the fault on ``fault_dataset``,
    default the scored one); a ``late`` marker is waited for before returning."""
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
# canary runs: its deployment run waits for the very traffic the next days bring, and any run queued behind it
# waits for that run. The DAGs are the model's, by the ids its declaration gives them (train_model, monitor_model,
# deploy_model for the flights).
RUN_STATES_COUNTED = ("queued", "running")
REPLAY_WAITS_FOR = ("train", "monitor", "deploy")  # the model's DAGs, by role


def replay_runs_counted(settings=None) -> dict[str, tuple[str, ...]]:
    """{dag_id: the run states counted} of the DAGs the replay waits for (the model's, by their declared ids)."""
    from ..core import schema

    dags = schema.model(settings=settings).dags
    return {dags[role]: RUN_STATES_COUNTED for role in REPLAY_WAITS_FOR}


def day_ingested(lake, date: dt.date | str) -> list[str]:
    """The replayed data sets of ``date`` not yet ingested: neither curated nor quarantined (empty: the day is
    done)."""
    from ..core import layout

    return [
        table
        for table in replayed().datasets
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
    Asset events a moment after ingestion, and its decision may retrain); and no run of the model's DAGs (``replay_runs_counted``) in
    flight (the deployment DAG's not counted while a canary runs). ``runs``: {dag_id: {state: number of its runs
    in that state}}; ``rollout``: the current rollout (``core.rollouts.current``)."""
    from ..core import layout, rollouts, schema

    day, first = dt.date.fromisoformat(str(date)[:10]), dt.date.fromisoformat(str(first_day)[:10])
    waits = []
    before = day - dt.timedelta(days=1)
    source_first = replayed().first
    if day > first and (source_first is None or before >= source_first):
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
    deploy = schema.model().dags["deploy"]
    for dag_id, states in replay_runs_counted().items():
        if dag_id == deploy and canary is not None:
            continue
        n = {s: runs.get(dag_id, {}).get(s, 0) for s in states}
        if any(n.values()):
            waits.append(f"{dag_id}: " + ", ".join(f"{v} {s}" for s, v in n.items() if v))
    return waits
