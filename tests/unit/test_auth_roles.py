"""Who may change what is served (``mlops_airflow.auth``): the simple auth manager's roles, and a deployment DAG's
runs changed only by ``op`` and ``admin``. Over REST with two users: ``tests/deploy/test_deployment.py``."""

from __future__ import annotations

import pytest
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

from mlops_airflow.auth import MlopsAuthManager, deployment_dag_ids


def allowed(role: str, method: str, dag_id: str, entity=DagAccessEntity.RUN) -> bool:
    user = SimpleAuthManagerUser(username=f"a_{role}", role=role)
    return MlopsAuthManager().is_authorized_dag(
        method=method, user=user, access_entity=entity, details=DagDetails(id=dag_id)
    )


def test_the_deployment_dags_are_every_declared_models():
    assert "deploy_model" in deployment_dag_ids()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_only_op_and_admin_change_a_deployment_dags_runs(method):
    assert [allowed(r, method, "deploy_model") for r in ("viewer", "user", "op", "admin")] == [
        False,
        False,
        True,
        True,
    ]
    assert allowed("user", method, "deploy_model", DagAccessEntity.TASK_INSTANCE) is False  # clearing its tasks


def test_everyone_reads_it_and_a_user_still_runs_the_other_dags():
    assert all(allowed(r, "GET", "deploy_model") for r in ("viewer", "user", "op", "admin"))
    assert allowed("user", "POST", "ingest_flights") and not allowed("viewer", "POST", "ingest_flights")
    assert not allowed(None, "GET", "deploy_model")  # no role: the simple manager refuses
