"""Task callables of ``simulate_upstream``: Airflow context in, ``include.mlops.ingest.simulator`` calls out."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)


def _plan(params: dict[str, Any]):
    from include.mlops.ingest.simulator import BadParam, plan

    try:
        return plan(
            params.get("start_date"),
            params.get("end_date"),
            params.get("fault"),
            params.get("fault_days"),
            params.get("fault_dataset") or "flights",
            bool(params.get("replay_traffic")),
        )
    except BadParam as exc:  # a retry cannot mend a param
        raise AirflowFailException(str(exc)) from None


def plan(context: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's days (each with its fault or none), checked before anything is written."""
    p = _plan(context["params"])
    log.info(
        "simulating %d day(s) %s .. %s; fault %s on %s (%s); traffic replay %s",
        len(p.days),
        p.days[0].date,
        p.days[-1].date,
        (p.faulty[0].fault if p.faulty else None),
        [d.date for d in p.faulty] or "no day",
        p.fault_dataset,
        "on" if p.replay else "off",
    )
    return [d.as_dict() for d in p.days]


def publish_day(day: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """One day: its flights sent to the prediction service (when asked and ``MLOPS_SERVE_URL`` is set), then its
    drops written into ``landing/``."""
    from include.mlops.ingest.simulator import Day, Service, simulate_day

    from .connections import get_lake

    p = _plan(context["params"])
    return simulate_day(
        Day(day["date"], day.get("fault")),
        get_lake(),
        fault_dataset=p.fault_dataset,
        replay=p.replay,
        service=Service.from_env(),
    )
