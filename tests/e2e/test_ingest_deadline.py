"""A late day is noticed: ingest_flights carries a deadline alert (Airflow 3's DeadlineAlert, from the moment its
run is queued); when a run misses it, the triggerer calls the callback, which sends Slack one message."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder="{dags}/ingest.py").get_dag("ingest_flights")
print("RESULT " + json.dumps([(type(a.reference).__name__, a.interval.total_seconds(), a.callback.path)
                              for a in (dag.deadline or [])]))
"""


def _deadlines(env_value: str | None) -> list:
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_INGEST_DEADLINE_S"}
    if env_value is not None:
        env["MLOPS_INGEST_DEADLINE_S"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(dags=ROOT / "dags")], env=env, capture_output=True, text=True, timeout=120
    )
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[7:])


def test_ingest_flights_has_a_deadline_alert_where_one_is_set(airflow_db):
    """Deployments set MLOPS_INGEST_DEADLINE_S; without it (tests, `airflow dags test`) there is none."""
    assert _deadlines("28800") == [["DagRunQueuedAtDeadline", 28800.0, "mlops_airflow.blocks.notifiers.ingestion_late"]]
    assert _deadlines(None) == []


def test_a_missed_deadline_sends_slack_one_message(slack):
    """The callback as the triggerer calls it: the scheduler's context of the run and the deadline."""
    from mlops_airflow.blocks.notifiers import ingestion_late

    context = {
        "dag_run": {
            "dag_id": "ingest_flights",
            "dag_run_id": "scheduled__2013-03-04T00:00:00+00:00",
            "logical_date": "2013-03-04T00:00:00+00:00",
            "state": "running",
            "conf": {},
        },
        "deadline": {"id": "d1", "deadline_time": "2013-03-05T08:00:00+00:00"},
    }
    asyncio.run(ingestion_late(context=context))
    [text] = slack.texts()
    assert text.startswith("[FAILURE] Ingestion of 2013-03-04 is late")
    assert "ingest_flights" in text and "2013-03-05T08:00:00" in text
