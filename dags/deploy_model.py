"""
### deploy_model

Rolls a model version out behind the prediction service, then promotes or rolls it back on evidence.

Triggered by `train_model` when a version passes the evaluation gate (conf `{"version": "7"}`), or by hand.
**plan** → with no champion yet the version is promoted directly; otherwise **start_canary** (the version
becomes the `challenger`; the service sends `canary_share` of flights to it, by a stable hash of the flight
key) → **wait_for_evidence** (until each arm has `min_labelled_per_arm` predictions whose outcomes ingestion
has brought in) → **decide** (both versions scored on the same labelled canary flights: promote when the
challenger's log-loss is, with 95 % confidence, at most `max_logloss_increase` worse; else roll back).
Slack gets the decision with the numbers either way. `action` = `promote` / `rollback` does it by hand.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag, task

from mlops_airflow import deployment
from mlops_airflow.defaults import default_args

POKE_S = float(os.environ.get("MLOPS_DEPLOY_POKE_S", "600"))


@dag(
    schedule=None,
    start_date=datetime(2013, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["deployment", "canary", "serving"],
    params={
        "version": Param(None, type=["null", "string", "integer"], title="Model version"),
        "action": Param("canary", enum=["canary", "promote", "rollback"], title="Action"),
        "canary_share": Param(None, type=["null", "number"], minimum=0, maximum=1,
                              title="Canary share (empty: include/config/deploy.yaml)"),
        "min_labelled_per_arm": Param(None, type=["null", "integer"], minimum=1),
        "max_logloss_increase": Param(None, type=["null", "number"]),
        "wait_hours": Param(72, type="integer", minimum=1, title="Give up waiting for evidence after (hours)"),
    },
    default_args=default_args(),
)
def deploy_model():
    @task.branch
    def plan(**context) -> str:
        return deployment.plan(context)

    @task
    def start_canary(**context) -> dict:
        return deployment.start_canary(context)

    @task.sensor(poke_interval=POKE_S, timeout=timedelta(days=7).total_seconds(), mode="reschedule")
    def wait_for_evidence(**context) -> bool:
        return deployment.evidence_ready(context)

    @task
    def decide(**context) -> dict:
        return deployment.decide(context)

    @task
    def promote_now(**context) -> dict:
        return deployment.promote_now(context)

    @task
    def rollback_now(**context) -> dict:
        return deployment.rollback_now(context)

    route = plan()
    route >> start_canary() >> wait_for_evidence() >> decide()
    route >> promote_now()
    route >> rollback_now()


deploy_model()
