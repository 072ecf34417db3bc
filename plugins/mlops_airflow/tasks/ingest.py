"""Task callables of the ingestion DAGs (``ingest_<data set>``): Airflow context in, ``include.mlops.ingest.ingestion``
calls out."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from ..blocks.defaults import batch_date
from ..blocks.notifiers import BatchQuarantined

log = logging.getLogger(__name__)


def outside_window(context: dict[str, Any]) -> str | None:
    """Why this run is outside the window of ``include/config/schedule.yaml`` (its logical date, or its data date:
    the ``date`` param), naming the window and the settings that move it; None when it is inside."""
    from include.mlops.core.config import ScheduleConfig

    cfg = ScheduleConfig.from_env()
    for what, d in (("the run's logical date", context.get("ds")), ("its data date", batch_date(context))):
        why = cfg.outside(d) if d else None
        if why:
            return f"{what} {why}: nothing is ingested for it"
    return None


def check_window(context: dict[str, Any]) -> str:
    """Fails the task (no retry: waiting changes nothing) when the run is outside the window; the data date else.
    A leaf without a start date: in a run dated before the window, the one task Airflow makes, so the run fails
    instead of ending green with nothing done."""
    why = outside_window(context)
    if why:
        raise AirflowFailException(why)
    log.info("data date %s is in the window of include/config/schedule.yaml", batch_date(context))
    return batch_date(context)


def _batch(dataset: str, context: dict[str, Any]):
    """The batch as this run handles it: the data date, and the run's own key (its staging folder)."""
    from include.mlops.core.lake import UnsafePath, run_key
    from include.mlops.core.schema import dataset as dataset_spec
    from include.mlops.ingest.ingestion import batch

    try:
        key = run_key(context["run_id"])
    except UnsafePath as exc:
        raise AirflowFailException(str(exc)) from None
    return batch(dataset_spec(dataset), batch_date(context), key)


def _extracted_sha256(dataset: str, context: dict[str, Any]) -> str | None:
    """What this run's extract task staged (its sha256): validate and curate use exactly those bytes."""
    info = context["ti"].xcom_pull(task_ids=f"{dataset}.extract")
    return info.get("sha256") if isinstance(info, dict) else None


class QuarantinedDropMissing(AirflowFailException):
    """A rerun of a quarantined date finds no new drop: waiting for one would only run into the sensor's
    timeout, so the task fails at once (no retries) saying what to do."""


def drop_is_ready(dataset: str, context: dict[str, Any]) -> bool:
    from include.mlops.ingest.ingestion import is_ready, quarantined_without_drop, rerun_blocked_message

    from ..blocks.connections import get_lake

    why = outside_window(context)
    if why:  # check_window fails the run, saying so; nothing outside the window is ingested
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(why)
    lake = get_lake()
    b = _batch(dataset, context)
    ready = is_ready(lake, b)
    if not ready:
        record = quarantined_without_drop(lake, b)
        if record is not None:
            raise QuarantinedDropMissing(rerun_blocked_message(lake, b, record))
    log.info("drop %s %s", b.id, "is complete" if ready else "is not complete yet")
    return ready


def extract(dataset: str, context: dict[str, Any]) -> dict[str, Any]:
    from include.mlops.ingest.ingestion import extract as _extract

    from ..blocks.connections import get_lake

    return _extract(get_lake(), _batch(dataset, context))


def validate(dataset: str, context: dict[str, Any]) -> dict[str, Any]:
    from include.mlops.core.config import Settings
    from include.mlops.ingest.ingestion import check
    from include.mlops.ingest.validation import BatchRejected

    from ..blocks.connections import get_lake

    b = _batch(dataset, context)
    try:
        report = _fail_on_stale(check, get_lake(), b, Settings.from_env(), _extracted_sha256(dataset, context))
    except BatchRejected as exc:
        log.error("%s", exc)
        raise BatchQuarantined(str(exc), b.id, exc.quarantine_uri, exc.report.failed_rules) from None
    log.info("batch %s passed %d rule(s) of suite %r on %d rows", b.id, report.evaluated, report.suite, report.rows)
    return {"batch": b.id, "rows": report.rows, "rules": report.evaluated}


def _fail_on_stale(fn, *args):
    from include.mlops.ingest.ingestion import StaleDrop

    try:
        return fn(*args)
    except StaleDrop as exc:  # retrying cannot bring the validated bytes back
        raise AirflowFailException(str(exc)) from None


def curate(dataset: str, context: dict[str, Any]) -> dict[str, Any]:
    from include.mlops.ingest.ingestion import curate as _curate

    from ..blocks.connections import get_lake

    info = _fail_on_stale(_curate, get_lake(), _batch(dataset, context), _extracted_sha256(dataset, context))
    log.info("curated %s", info)
    return info


def quarantined(dataset: str, context: dict[str, Any]) -> dict[str, Any]:
    """What this run's quarantine of the batch says (date, failed rules, where), for the ``quarantined_<dataset>``
    Asset. Skipped unless validation of this run quarantined it (a failure of another kind is not a quarantine)."""
    import datetime as dt

    from airflow.sdk.exceptions import AirflowSkipException

    from include.mlops.core import layout

    from ..blocks.connections import get_lake

    lake, b = get_lake(), _batch(dataset, context)
    folder = b.folder("quarantine")
    if not lake.exists(folder, layout.QUARANTINE_REPORT):
        raise AirflowSkipException(f"batch {b.id} was not quarantined: validation failed for another reason")
    report = lake.read_json(folder, layout.QUARANTINE_REPORT)
    started = getattr(context.get("dag_run"), "start_date", None)
    at = report.get("quarantined_at")
    if started and at and dt.datetime.fromisoformat(at) < started:
        raise AirflowSkipException(f"batch {b.id}'s quarantine is older than this run: not this run's doing")
    return {
        "dataset": dataset,
        "date": b.date.isoformat(),
        "failed_rules": report.get("failed_rules", []),
        "uri": lake.uri(folder),
    }
