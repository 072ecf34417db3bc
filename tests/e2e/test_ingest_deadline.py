"""A late day is noticed: ingest_flights carries a deadline alert (Airflow 3's DeadlineAlert, from the moment its
run is queued); when a run misses it, the triggerer calls the callback, which sends Slack one message."""

from __future__ import annotations

import asyncio

from mlops_airflow.defaults import INGEST_DEADLINE_S


def test_ingest_flights_has_a_deadline_alert(dagbag):
    from airflow.sdk.definitions.deadline import DagRunQueuedAtDeadline

    dag = dagbag.get_dag("ingest_flights")
    [alert] = dag.deadline
    assert isinstance(alert.reference, DagRunQueuedAtDeadline)
    assert alert.interval.total_seconds() == INGEST_DEADLINE_S
    assert alert.callback.path == "mlops_airflow.notifiers.ingestion_late"


def test_a_missed_deadline_sends_slack_one_message(slack):
    """The callback as the triggerer calls it: the scheduler's context of the run and the deadline."""
    from mlops_airflow.notifiers import ingestion_late

    context = {"dag_run": {"dag_id": "ingest_flights", "dag_run_id": "scheduled__2013-03-04T00:00:00+00:00",
                           "logical_date": "2013-03-04T00:00:00+00:00", "state": "running", "conf": {}},
               "deadline": {"id": "d1", "deadline_time": "2013-03-05T08:00:00+00:00"}}
    asyncio.run(ingestion_late(context=context))
    [text] = slack.texts()
    assert text.startswith("[FAILURE] Ingestion of 2013-03-04 is late")
    assert "ingest_flights" in text and "2013-03-05T08:00:00" in text
