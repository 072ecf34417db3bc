"""What the lifecycle DAGs share: default_args (an owner, retries with exponential backoff, a Slack alert on every
failure and retry), the sensors' timing, the `date` param of the DAGs whose logical date is a data date, the schedule's
window, the replay's settings, and a run's key."""

from __future__ import annotations

import os
from datetime import UTC, timedelta
from typing import Any

from . import notifiers

SENSOR_POKE_S = float(os.environ.get("MLOPS_SENSOR_POKE_S", "60"))
RETRY_DELAY_S = float(os.environ.get("MLOPS_RETRY_DELAY_S", "30"))  # the first retry's delay; it doubles
# a day's ingestion run not finished within this long of being queued is late (a deadline alert on Slack).
# Set by the deployments (make up, make up-prod, the image: 8 hours); unset, there is no deadline, because
# Airflow 3.3's dag.test() (and `airflow dags test`) fails once a run with a deadline alert succeeds.
INGEST_DEADLINE_S = float(os.environ.get("MLOPS_INGEST_DEADLINE_S") or 0)


def ingest_deadline():
    """ingest_flights' deadline alert, or None when ``MLOPS_INGEST_DEADLINE_S`` is unset."""
    if INGEST_DEADLINE_S <= 0:
        return None
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    from .notifiers import ingestion_late

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=INGEST_DEADLINE_S),
        callback=AsyncCallback(ingestion_late),
        name="day_curated",
    )


SENSOR_TIMEOUT_S = float(os.environ.get("MLOPS_SENSOR_TIMEOUT_S", str(6 * 3600)))


def date_param(what: str):
    from airflow.sdk import Param

    return Param(
        None,
        type=["null", "string"],
        format="date",
        description=f"Data date to {what} (YYYY-MM-DD); empty means the run's logical date.",
    )


def end_date_param():
    """The last day of a training window (train_model, tune_model)."""
    from airflow.sdk import Param

    return Param(
        None,
        type=["null", "string"],
        format="date",
        title="End date",
        description="Last day of the window; empty means the newest curated day.",
    )


def default_args(**overrides: Any) -> dict[str, Any]:
    return {
        "owner": "mlops",
        "retries": 2,
        "retry_delay": timedelta(seconds=RETRY_DELAY_S),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": notifiers.on_task_failure,
        "on_retry_callback": notifiers.on_task_retry,
    } | overrides


def batch_date(context: dict[str, Any]) -> str:
    """The data date: the ``date`` param of a manual run, else the run's logical date."""
    from include.mlops.core.lake import as_date

    params = context.get("params") or {}
    value = params.get("date") or context.get("ds")
    if not value:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("no data date: set the 'date' param or trigger with a logical date")
    return as_date(value).isoformat()


def schedule_window() -> dict[str, Any]:
    """``start_date``, ``end_date`` and ``catchup`` of the daily DAGs, from ``include/config/schedule.yaml`` (or
    ``MLOPS_START_DATE`` / ``MLOPS_END_DATE`` / ``MLOPS_CATCHUP``): nothing in the DAGs assumes the reference data's
    year, and the start is a fixed date (a start date moving with the day the files are parsed is not a window).
    An unset or invalid start date is an error while the DAG files are parsed, naming the setting."""
    from datetime import datetime

    from include.mlops.core.config import ScheduleConfig

    cfg = ScheduleConfig.from_env()
    start, end = cfg.window()

    def midnight(d) -> datetime | None:
        return None if d is None else datetime(d.year, d.month, d.day, tzinfo=UTC)

    return {"start_date": midnight(start), "end_date": midnight(end), "catchup": bool(cfg.catchup)}


def window_on_tasks() -> tuple[dict[str, Any], dict[str, Any]]:
    """The window of a DAG whose runs are data dates (``ingest_flights``), as (the DAG's arguments, its tasks'
    ``default_args``): the start and end on the tasks rather than on the DAG. The scheduler reads the window from
    the tasks all the same, but a task that sets ``start_date=None`` (``check_window``) then has a task instance in
    a run dated before the start, and fails it: with the start on the DAG, Airflow creates no task instance for
    such a run, and it ends green having done nothing. (A run dated after ``end_date`` gets none either.)"""
    w = schedule_window()
    return {"start_date": None, "catchup": w["catchup"]}, {"start_date": w["start_date"], "end_date": w["end_date"]}


def replay() -> dict[str, Any]:
    """The replay's settings (``include/config/schedule.yaml``, ``MLOPS_REPLAY``): whether ``simulate_upstream``
    runs on the daily schedule, and how often a day looks whether its turn has come."""
    from include.mlops.core.config import ScheduleConfig

    cfg = ScheduleConfig.from_env()
    return {"on": bool(cfg.replay), "poke_s": float(cfg.replay_poke_s)}


def run_key(context: dict[str, Any]) -> str:
    """The run's key in the lake (``training/<key>/``, ``reports/gate/<key>/``) and in MLflow; a run id that does
    not make a safe key fails the task instead of reaching the lake."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.core.lake import UnsafePath
    from include.mlops.core.lake import run_key as key_of

    try:
        return key_of(context["dag_run"].run_id)
    except UnsafePath as exc:
        raise AirflowFailException(str(exc)) from None
