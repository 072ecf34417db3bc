"""Fault tests: each injects one fault (a registry that raises, a write cut off, an unsafe run id, secrets in a
job's environment, a cleared task, two runs of one date, a client steering the canary) and asserts the safe
outcome. The Airflow fixtures (``run_dag``, ``slack``, ``airflow_db``...) come from ``tests/helpers``."""

from __future__ import annotations

import socket
import uuid

import pytest

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
            raise MlflowException(f"API request to get alias {alias!r} of {name!r} failed: 503 Service Unavailable",
                                  error_code=TEMPORARILY_UNAVAILABLE)

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
