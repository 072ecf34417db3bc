"""Fixtures for real Airflow runs (``dag.test()``) against a real metadata DB, lake, S3 API (moto server) and HTTP
endpoints (Slack); registered once for the whole suite by ``tests/conftest.py`` (``pytest_plugins``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db():
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    for pool, slots in (("horovod", "1"), ("tuning", "2")):
        out = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "pools", "set", pool, slots, pool],
            capture_output=True,
            text=True,
            env=os.environ,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return home


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


class Run:
    """The outcome of one DAG run: its state, and each task's state, try count and duration (seconds)."""

    def __init__(self, dag_run):
        from airflow.models import TaskInstance
        from airflow.models.asset import AssetEvent
        from airflow.utils.session import create_session

        self.run_id = dag_run.run_id
        self.state = str(dag_run.state)
        with create_session() as s:
            tis = s.query(TaskInstance).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
            self.tasks = {ti.task_id: (str(ti.state), ti.try_number) for ti in tis}
            self.durations = {
                ti.task_id: (ti.end_date - ti.start_date).total_seconds() for ti in tis if ti.start_date and ti.end_date
            }
            events = s.query(AssetEvent).filter_by(source_dag_id=dag_run.dag_id, source_run_id=dag_run.run_id).all()
            self.asset_events = {e.asset.name: dict(e.extra or {}) for e in events}

    def __repr__(self):
        return f"Run({self.state}, {self.tasks})"


def run_test(dag, date: str, conf: dict | None = None) -> Run:
    d = datetime.fromisoformat(date).replace(tzinfo=UTC)
    return Run(dag.test(logical_date=d, run_conf=conf))


@pytest.fixture
def run_dag(dagbag):
    from airflow.dag_processing.dagbag import DagBag

    def _run(dag_id: str, date: str, conf: dict | None = None) -> Run:
        # a freshly parsed DAG per run, as a worker would have: dag.test() leaves a run's conf in the params
        return run_test(DagBag(dag_folder=str(ROOT / "dags")).get_dag(dag_id), date, conf)

    return _run


@pytest.fixture
def slack(monkeypatch):
    """A webhook stand-in as the ``slack_default`` connection."""
    from slack_endpoint import SlackEndpoint

    endpoint = SlackEndpoint()
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_DEFAULT", json.dumps(endpoint.connection()))
    yield endpoint
    endpoint.close()


@pytest.fixture
def lake():
    from include.mlops.core.config import Settings
    from include.mlops.core.lake import Lake

    return Lake(Settings.from_env().lake_url)


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def curated(airflow_db):
    """Three weeks of February 2013, curated (straight from the simulator's tables: ``curation.write_curated``)."""
    from curation import write_curated

    from include.mlops.core.config import Settings
    from include.mlops.core.lake import Lake

    lake = Lake(Settings.from_env().lake_url)
    write_curated(lake, [f"2013-02-{d:02d}" for d in range(1, 22)])
    return lake
