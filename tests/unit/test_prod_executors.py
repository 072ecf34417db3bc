"""The production launcher's executors (``scripts/prod/prod_config.py``): the LocalExecutor, the CeleryExecutor
with what it needs (broker, database result backend, Redis visibility timeout, workers here or on other hosts),
and a refusal of every other one. In-process: ``check(environment(env))`` is what ``airflow_prod.py check`` runs
(tests/deploy/test_deployment.py runs the launcher itself)."""

from __future__ import annotations

import secrets
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg2://airflow:pw@db.internal:5432/airflow"


@pytest.fixture
def prod(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts" / "prod"))
    sys.modules.pop("prod_config", None)
    import prod_config

    return prod_config


@pytest.fixture
def base(tmp_path) -> dict[str, str]:
    """A configuration the launcher accepts with the LocalExecutor (nothing from the test's own environment)."""
    return {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "MLOPS_HOME": str(tmp_path / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": PG,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "MLOPS_SERVE_TOKEN": secrets.token_urlsafe(32),
    }


@pytest.fixture
def celery(base) -> dict[str, str]:
    return base | {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__CELERY__BROKER_URL": "redis://redis:6379/0"}


@pytest.fixture
def remote(celery) -> dict[str, str]:
    """Celery with every worker on another host, and what those hosts need."""
    return celery | {
        "MLOPS_CELERY_WORKERS": "0",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-api.internal:8080/execution/",
        "MLOPS_LAKE_URL": "s3://lake-bucket/mlops",
        "MLFLOW_TRACKING_URI": "https://mlflow.internal",
        "DVC_REMOTE_URL": "s3://lake-bucket/dvc",
        "AIRFLOW__API__SECRET_KEY": "k" * 32,
    }


def problems(prod, env: dict[str, str]) -> list[str]:
    return prod.check(prod.environment(env))


def test_the_local_executor_is_the_default_and_runs_no_worker(prod, base):
    env = prod.environment(base)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor" and prod.check(env) == []
    assert prod.components(env) == ("scheduler", "dag-processor", "triggerer", "api-server", "serve")
    assert not any(k.startswith("AIRFLOW__CELERY") for k in env)  # no Celery setting made up for it
    assert "MLOPS_CELERY_WORKERS" not in env


def test_celery_is_accepted_with_a_broker_and_gets_its_defaults(prod, celery):
    env = prod.environment(celery)
    assert prod.check(env) == []
    # the result backend: the metadata database, as a Celery database backend
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + PG
    # Redis redelivers an unacknowledged task after 6 h (Celery's provider: 24 h), longer than train's 2 h
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"] == "21600"
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == env["AIRFLOW__CORE__PARALLELISM"]
    # one worker on this host by default, stopped after the scheduler, before the service
    assert prod.components(env) == (
        "scheduler",
        "dag-processor",
        "triggerer",
        "api-server",
        "celery-worker-1",
        "serve",
    )


def test_celery_settings_given_are_kept(prod, celery):
    given = celery | {
        "AIRFLOW__CORE__EXECUTOR": "airflow.providers.celery.executors.celery_executor.CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": "amqp://user:pw@rabbit:5672//",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://celery:pw@results:5432/celery",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "8",
        "MLOPS_CELERY_WORKERS": "2",
        "MLOPS_SERVE_COMPONENT": "false",
    }
    env = prod.environment(given)
    assert prod.check(env) == []
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql://celery:pw@results:5432/celery"
    assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "8"
    # RabbitMQ has no visibility timeout: none is set for it
    assert "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT" not in env
    assert prod.components(env)[-2:] == ("celery-worker-1", "celery-worker-2")


def test_celery_workers_on_other_hosts_are_accepted_with_what_they_need(prod, remote):
    env = prod.environment(remote)
    assert prod.check(env) == []
    assert prod.components(env) == ("scheduler", "dag-processor", "triggerer", "api-server", "serve")


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"AIRFLOW__CELERY__BROKER_URL": None}, "AIRFLOW__CELERY__BROKER_URL is not set"),
        ({"AIRFLOW__CELERY__BROKER_URL": "sqla+postgresql://u:pw@db/x"}, "must name a Redis or RabbitMQ broker"),
        ({"AIRFLOW__CELERY__RESULT_BACKEND": "redis://redis:6379/1"}, "RESULT_BACKEND must be a PostgreSQL database"),
        ({"AIRFLOW__CELERY__RESULT_BACKEND": "rpc://"}, "got a 'rpc' URL"),
        ({"AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600"}, "at least 7200"),
        ({"AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "six hours"}, "whole number of seconds"),
        ({"MLOPS_CELERY_WORKERS": "-1"}, "MLOPS_CELERY_WORKERS='-1': must be a whole number >= 0"),
        ({"MLOPS_CELERY_WORKERS": "two"}, "MLOPS_CELERY_WORKERS='two'"),
    ],
    ids=["no-broker", "db-broker", "redis-results", "rpc-results", "short-visibility", "bad-visibility", "neg", "nan"],
)
def test_celery_refusals(prod, celery, change, problem):
    env = {k: v for k, v in (celery | change).items() if v is not None}
    found = problems(prod, env)
    assert len(found) == 1 and problem in found[0], found


def test_celery_without_a_postgresql_metadata_database_has_no_result_backend(prod, celery):
    found = problems(prod, celery | {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/a.db"})
    assert any("must name a PostgreSQL database" in p for p in found), found
    assert any("RESULT_BACKEND must be a PostgreSQL database" in p and "unset" in p for p in found), found


def test_no_broker_password_in_a_refusal(prod, celery):
    found = problems(prod, celery | {"AIRFLOW__CELERY__BROKER_URL": "kafka://user:Sup3rSecretPw@k:9092"})
    assert found and "Sup3rSecretPw" not in "".join(found) and "'kafka'" in found[0]


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": None}, "needs AIRFLOW__CORE__EXECUTION_API_SERVER_URL"),
        ({"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://localhost:8080/execution/"}, "loopback (localhost)"),
        ({"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.1.1:8080/execution/"}, "loopback (127.0.1.1)"),
        ({"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://0.0.0.0:8080/execution/"}, "loopback (0.0.0.0)"),
        ({"MLOPS_LAKE_URL": None}, "needs a lake every host reaches"),
        ({"MLOPS_LAKE_URL": "file:///srv/lake"}, "needs a lake every host reaches"),
        ({"MLFLOW_TRACKING_URI": None}, "needs a model registry every host reaches"),
        ({"MLFLOW_TRACKING_URI": "sqlite:////srv/mlflow.db"}, "needs a model registry every host reaches"),
        ({"DVC_REMOTE_URL": None}, "needs a DVC remote every host reaches"),
        ({"DVC_REMOTE_URL": "/srv/dvc-storage"}, "needs a DVC remote every host reaches"),
        ({"AIRFLOW__API__SECRET_KEY": None}, "needs AIRFLOW__API__SECRET_KEY"),
        ({"AIRFLOW__API__SECRET_KEY": "short"}, "needs AIRFLOW__API__SECRET_KEY"),
    ],
    ids=[
        "no-api-url",
        "localhost",
        "loopback-net",
        "unspecified",
        "no-lake",
        "file-lake",
        "no-registry",
        "sqlite",
        "no-dvc-remote",
        "local-dvc-remote",
        "no-secret-key",
        "short-secret-key",
    ],
)
def test_celery_workers_on_other_hosts_refusals(prod, remote, change, problem):
    env = {k: v for k, v in (remote | change).items() if v is not None}
    found = problems(prod, env)
    assert len(found) == 1 and problem in found[0], found


def test_workers_on_this_host_need_no_remote_settings(prod, celery):
    """One local worker shares this host's disk and reaches the api-server on the loopback: no refusal."""
    env = celery | {"MLOPS_CELERY_WORKERS": "1", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:8080/"}
    assert problems(prod, env) == []


@pytest.mark.parametrize(
    "executor",
    ["KubernetesExecutor", "SequentialExecutor", "LocalExecutor,CeleryExecutor", "my.module.CeleryExecutor"],
)
def test_other_executors_are_refused_saying_what_is_supported(prod, base, executor):
    found = problems(prod, base | {"AIRFLOW__CORE__EXECUTOR": executor})
    assert len(found) == 1, found
    assert f"AIRFLOW__CORE__EXECUTOR={executor} is not supported" in found[0]
    assert "LocalExecutor" in found[0] and "CeleryExecutor" in found[0] and "Helm chart" in found[0]


def test_the_visibility_floor_is_the_longest_task(prod):
    """LONGEST_TASK_S is train's execution_timeout: the check's floor follows the operator it protects."""
    import inspect

    from mlops_airflow.blocks.operators import HorovodTrainOperator

    default = inspect.signature(HorovodTrainOperator.__init__).parameters["execution_timeout"].default
    assert default == timedelta(seconds=prod.LONGEST_TASK_S)
    assert prod.DEFAULT_VISIBILITY_TIMEOUT_S > prod.LONGEST_TASK_S


def test_the_worker_command(prod, celery, monkeypatch):
    """Each local worker runs under its own node name; only the first serves this host's task logs."""
    import supervisor

    env = prod.environment(celery | {"MLOPS_CELERY_WORKERS": "2"})
    monkeypatch.setattr(supervisor, "_airflow", lambda env: "airflow")
    first = supervisor._command(env, "celery-worker-1")
    second = supervisor._command(env, "celery-worker-2")
    assert first[:5] == [
        "airflow",
        "celery",
        "worker",
        "--celery-hostname",
        supervisor.celery_hostname("celery-worker-1"),
    ]
    assert "--skip-serve-logs" not in first and second[-1] == "--skip-serve-logs"
    assert supervisor._command(env, "scheduler") == ["airflow", "scheduler"]
