"""Fault tests: each injects one fault (a registry that raises, a write cut off, an unsafe run id, secrets in a
job's environment, a cleared task, two runs of one date, a client steering the canary) and asserts the safe
outcome. The Airflow fixtures (``run_dag``, ``slack``, ``airflow_db``...) come from ``tests/helpers``.

Probe DAGs that fail or alert on purpose live in ``tests/faults/dags/``, a DAG bundle of their own that ``probe``
adds next to the project's ``dags-folder`` bundle for the test (``dag.test()`` runs only DAGs that a configured
bundle holds)."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest
from airflow_fixtures import run_test
from tiny_models import tiny_version  # noqa: F401  (re-exported for the tests here)


@pytest.fixture
def own_registry(monkeypatch):
    """A registered model of this test's own (no other test's versions or aliases)."""
    monkeypatch.setenv("MLOPS_MODEL_NAME", f"fault_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def alias_lookup_fails(monkeypatch):
    """From when it is called: the registry answers everything but the alias lookup, which fails as an
    unreachable or overloaded tracking server does."""

    def arm():
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

        def unavailable(self, name, alias):
            raise MlflowException(
                f"API request to get alias {alias!r} of {name!r} failed: 503 Service Unavailable",
                error_code=TEMPORARILY_UNAVAILABLE,
            )

        monkeypatch.setattr(mlflow.MlflowClient, "get_model_version_by_alias", unavailable)

    return arm


@pytest.fixture
def unreachable_tracking_server(monkeypatch):
    """MLFLOW_TRACKING_URI pointing at a port nobody listens on, with MLflow's own retries off."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    return f"http://127.0.0.1:{port}"


PROBES = Path(__file__).resolve().parent / "dags"
LOCAL = "airflow.dag_processing.bundles.local.LocalDagBundle"


@pytest.fixture
def probe(airflow_db, monkeypatch):
    """``probe(dag_id, date)``: run that probe DAG with ``dag.test()``; returns its ``Run``."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv(
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
        json.dumps(
            [
                {"name": "dags-folder", "classpath": LOCAL, "kwargs": {}},
                {"name": "fault-probes", "classpath": LOCAL, "kwargs": {"path": str(PROBES)}},
            ]
        ),
    )
    bag = DagBag(dag_folder=str(PROBES))
    assert not bag.import_errors, bag.import_errors

    def _run(dag_id: str, date: str = "2013-01-02"):
        return run_test(bag.get_dag(dag_id), date)

    return _run
