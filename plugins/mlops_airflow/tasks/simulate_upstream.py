"""Task callables of ``simulate_upstream``: Airflow context in, ``include.mlops.simulate`` calls out."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)


def _plan(params: dict[str, Any]):
    from include.mlops.simulate.plan import BadParam, plan

    try:
        return plan(
            params.get("start_date"),
            params.get("end_date"),
            params.get("fault"),
            params.get("fault_days"),
            params.get("fault_dataset") or None,
            bool(params.get("replay_traffic")),
        )
    except BadParam as exc:  # a retry cannot mend a param
        raise AirflowFailException(str(exc)) from None


def scheduled(context: dict[str, Any]) -> bool:
    """A run of the replay's schedule (or a backfill of it): its day is its logical date, not the form's range."""
    run_type = getattr(context.get("dag_run"), "run_type", None)
    return str(getattr(run_type, "value", run_type)) in ("scheduled", "backfill")


def _run_plan(context: dict[str, Any]):
    if scheduled(context):  # the replay: the run's own day, its traffic first, no fault
        from ..blocks.defaults import batch_date

        return _plan({"start_date": batch_date(context), "replay_traffic": True})
    return _plan(context["params"])


def plan(context: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's days (each with its fault or none), checked before anything is written: the form's range in a
    manual run, the logical date in a scheduled one."""
    p = _run_plan(context)
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
    from include.mlops.simulate.plan import Day
    from include.mlops.simulate.simulator import Service, simulate_day

    from ..blocks.connections import get_lake

    p = _run_plan(context)
    return simulate_day(
        Day(day["date"], day.get("fault")),
        get_lake(),
        fault_dataset=p.fault_dataset,
        replay=p.replay,
        service=Service.from_env(),
    )


def replay_turn(context: dict[str, Any]) -> bool:
    """Whether a scheduled run's day may be published now (``simulator.replay_waits``): the day before ingested
    (and monitored, once a model serves) and no run of the model's training, monitoring or deployment DAG in flight
    (but a running canary's), counted through the task SDK (``get_dr_count``). A manual run publishes at once."""
    if not scheduled(context):
        return True
    from include.mlops.core import rollouts
    from include.mlops.simulate.simulator import replay_runs_counted, replay_waits

    from ..blocks.connections import get_lake
    from ..blocks.defaults import batch_date

    ti = context["ti"]
    runs = {
        dag_id: {state: ti.get_dr_count(dag_id=dag_id, states=[state]) for state in states}
        for dag_id, states in replay_runs_counted().items()
    }
    day, lake = batch_date(context), get_lake()
    waits = replay_waits(lake, day, context["dag"].start_date.date(), runs, rollouts.current(lake))
    if waits:
        log.info("%s waits for: %s", day, "; ".join(waits))
    return not waits
