"""The production launcher with the CeleryExecutor: Redis as broker, the metadata database as result backend,
one ``airflow celery worker`` as a component (``scripts/prod/airflow_prod.py``, the conftest's ``deployment``
fixture with this module's settings). One ``ingest_flights`` run for one day, triggered through the REST API,
runs to success with every task on the Celery worker (the deferred drop sensors on the triggerer).

Opt-in (``MLOPS_TEST_CELERY=1``, what ``make celery-check`` sets): a deployment of its own takes about two minutes
on two cores, more than ``make test`` can spend on it; the launcher's Celery checks themselves are unit tests
(``tests/unit/test_prod_executors.py``). The Redis server: ``MLOPS_TEST_REDIS`` (default
``redis://127.0.0.1:6379/0``); the run uses a queue of its own there, so other users of that Redis take none of
its tasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from deploy_support import OUTPUT, TERMINAL

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("MLOPS_TEST_CELERY") != "1", reason="opt-in: make celery-check (MLOPS_TEST_CELERY=1)"
    ),
    pytest.mark.timeout(900),
]

REDIS = os.environ.get("MLOPS_TEST_REDIS", "redis://127.0.0.1:6379/0")
QUEUE = f"mlops-celery-check-{uuid.uuid4().hex[:8]}"
DAY = "2013-01-17"


def deployment_settings(home: Path) -> dict[str, str]:
    """The Celery settings (the conftest's ``deployment`` fixture adds them): result backend and visibility
    timeout left to the launcher's defaults."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": REDIS,
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": QUEUE,
        "MLOPS_CELERY_WORKERS": "1",
        "MLOPS_SERVE_COMPONENT": "false",  # the run needs no prediction service
        "MLOPS_END_DATE": "2013-01-31",  # unpaused, the DAG schedules no run of its own (today's) beside the test's
    }


def test_one_run_through_the_celery_worker(deployment):
    from include.mlops.simulate.upstream import Upstream

    dep = deployment
    t0 = time.monotonic()
    pids = json.loads((dep.airflow_home / "prod" / "pids.json").read_text())
    assert set(pids) == {"scheduler", "dag-processor", "triggerer", "api-server", "celery-worker-1"}, pids
    # what the launcher gave the components where the test set nothing: the result backend (the metadata
    # database) and the visibility timeout, as the scheduler reads them (the worker gets the same environment;
    # its own is not readable from outside: Celery's process title overwrites it)
    code = (
        "import json\nfrom airflow.configuration import conf\n"
        "print(json.dumps([conf.get('core', 'executor'), conf.get('celery', 'result_backend'), "
        "conf.get('celery_broker_transport_options', 'visibility_timeout')]))"
    )
    env = psutil.Process(pids["scheduler"]).environ()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = json.loads(out.stdout.strip().splitlines()[-1])
    assert cfg == ["CeleryExecutor", "db+" + dep.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], "21600"], cfg

    dep.wait_for("ingest_flights to be parsed", lambda: dep.api("GET", "/api/v2/dags/ingest_flights").is_success, 180)
    r = dep.api("PATCH", "/api/v2/dags/ingest_flights", json={"is_paused": False})
    assert r.status_code == 200, r.text
    Upstream(dep.lake).publish_day(DAY)
    run_id = dep.trigger("ingest_flights", f"{DAY}T00:00:00Z")["dag_run_id"]

    def finished():
        runs = {r["dag_run_id"]: r["state"] for r in dep.runs("ingest_flights")}
        return runs.get(run_id) if runs.get(run_id) in TERMINAL else None

    state = dep.wait_for("the ingestion run", finished, 600)
    run_s = time.monotonic() - t0
    tis = dep.task_instances("ingest_flights", run_id)
    assert state == "success", {k: v["state"] for k, v in tis.items()}
    ran = {k: t for k, t in tis.items() if t["state"] == "success"}
    assert {"flights.extract", "flights.validate", "flights.curate", "weather.curate"} <= set(ran), sorted(ran)
    # every task went through Celery: the executor, the run's own queue, the worker's log of each
    worker_log = (dep.airflow_home / "prod" / "celery-worker-1.log").read_text(errors="replace")
    assert "Loaded executor: :CeleryExecutor:" in (dep.airflow_home / "prod" / "scheduler.log").read_text()
    for task_id, ti in ran.items():
        assert ti["queue"] == QUEUE and ti["executor"] in (None, "CeleryExecutor"), (task_id, ti)
        assert f"task_id='{task_id}', dag_id='ingest_flights', run_id='{run_id}'" in worker_log, (
            f"{task_id} of the run is not in the Celery worker's log"
        )
    # the task log as the UI reads it: from this host's worker log server
    ti = ran["flights.validate"]
    assert "passed" in dep.task_log("ingest_flights", run_id, "flights.validate", ti["try_number"])
    assert dep.lake.exists(f"curated/flights/date={DAY}", "part-00000.parquet")

    record = {"start_s": round(dep.start_s, 1), "run_s": round(run_s, 1), "tasks": len(ran)}
    (OUTPUT / "celery_check.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record))
