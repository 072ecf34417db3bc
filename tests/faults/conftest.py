"""Fault tests: real Airflow runs (``dag.test()``) of probe DAGs that fail or alert on purpose.

The probes live in ``tests/faults/dags/``, a DAG bundle of their own that ``probe`` adds next to the project's
``dags-folder`` bundle for the test (``dag.test()`` runs only DAGs that a configured bundle holds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow_runs import airflow_db, dagbag, run_dag, run_test, slack  # noqa: F401 - fixtures (tests/helpers)

PROBES = Path(__file__).resolve().parent / "dags"
LOCAL = "airflow.dag_processing.bundles.local.LocalDagBundle"


@pytest.fixture
def probe(airflow_db, monkeypatch):
    """``probe(dag_id, date)``: run that probe DAG with ``dag.test()``; returns its ``Run``."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "dags-folder", "classpath": LOCAL, "kwargs": {}},
        {"name": "fault-probes", "classpath": LOCAL, "kwargs": {"path": str(PROBES)}},
    ]))
    bag = DagBag(dag_folder=str(PROBES))
    assert not bag.import_errors, bag.import_errors

    def _run(dag_id: str, date: str = "2013-01-02"):
        return run_test(bag.get_dag(dag_id), date)

    return _run
