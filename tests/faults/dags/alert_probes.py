"""Probe DAGs of the fault tests (a DAG bundle of their own, added by tests/faults/conftest.py; never part of
the project's dags/): tasks that fail, or alert, on purpose."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, task

from mlops_airflow.blocks.defaults import default_args

START = datetime(2013, 1, 1, tzinfo=UTC)


@dag(schedule=None, start_date=START, catchup=False, default_args=default_args(retries=0), tags=["test"])
def alert_masking_probe():
    """A task whose exception quotes the password of the ``warehouse`` connection."""

    @task
    def log_in():
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection("warehouse")
        raise ConnectionError(f"login to {conn.host} as {conn.login} refused (password {conn.password!r})")

    log_in()


@dag(schedule=None, start_date=START, catchup=False, default_args=default_args(retries=0), tags=["test"])
def slack_delivery_probe():
    """One task that sends a decision alert and succeeds, one that fails (its failure alert from the callback)."""

    @task
    def notify(**context) -> str:
        from mlops_airflow.blocks.notifiers import notify

        return notify(context, "gate", "Probe decision", detail="a decision worth telling", fields={"probe": 1})

    @task
    def fail():
        raise RuntimeError("probe failure")

    notify()
    fail()


alert_masking_probe()
slack_delivery_probe()
