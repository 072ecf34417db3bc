"""
### deploy_model

Rolls a model version out behind the prediction service, then promotes or rolls it back on evidence.

Triggered by `train_model` when a version passes the evaluation gate (conf `{"version": "7", "date":
"2013-02-04"}`: the version and the data date of the run that trained it), or by hand.
**plan** → with no champion yet the version is promoted directly; otherwise **start_canary** (the version
becomes the `challenger` at the first stage of the ramp in `include/config/deploy.yaml`, by default the shadow:
the champion answers every flight and the challenger scores each one too, never returned; the evidence is the
flights of the days after `date`) → **wait_for_evidence** (each look weighs the stage's operational signals
(the challenger's requests, p99 latency and error rate, the service's memory, its served scores against the same
flights rescored offline) and the paired comparison of both versions on every labelled flight served since the
start: a clear harm or a crossed limit rolls back at once; a stage that has lasted `min_hours` with
`min_requests` and every signal within its limit advances to the next share; promotion needs the comparison's
verdict at the last stage (share 1.0); an inconclusive comparison is rolled back at `max_labelled` flights or
after `wait_hours`) → **approve_promotion** (only when `approval.required` in deploy.yaml and the evidence says
promote: a person answers on the run's Required Actions page, Slack says it waits; "Roll back", or no answer within
`approval.timeout_hours`, rolls back; skipped otherwise) → **decide** (sets the aliases, ends the rollout). If the evidence cannot be gathered (the
sensor fails), **rollback_on_failure** takes the challenger out of service. Slack hears each stage and the
decision with the numbers. `action` = `promote` / `rollback` does it by hand.
"""

from __future__ import annotations

import os

from airflow.sdk import Param, TriggerRule, dag, task

import mlops_airflow.tasks.deploy_model
from include.mlops.deploy import approval as promotion_approval
from include.mlops.deploy.config import DeployConfig
from mlops_airflow.blocks.approval import ApprovalTask
from mlops_airflow.blocks.assets import model_dags
from mlops_airflow.blocks.defaults import date_param, default_args, schedule_window
from mlops_airflow.blocks.forms import overrides_form
from mlops_airflow.blocks.sensors import EvidenceSensor

POKE_S = float(os.environ.get("MLOPS_DEPLOY_POKE_S", "600"))
MAX_WAIT_HOURS = 24 * 30  # the longest wait_hours a run may ask for
DEPLOYERS = {"DAGs": {"can_read", "can_edit", "can_delete"}, "DAG Runs": {"can_read", "can_create", "can_edit"}}


DAGS = model_dags()  # this model's DAG ids (include/config/datasets.yaml)


@dag(
    dag_id=DAGS["deploy"],  # from the declaration (the flights model: deploy_model)
    schedule=None,
    start_date=schedule_window()["start_date"],
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["deployment", "canary", "serving"],
    # who may change what is served, where a team runs the FAB auth manager (with the simple auth manager the
    # production launcher's mlops_airflow.auth.MlopsAuthManager holds the same rule): its runs for Op and Admin;
    # the User role must then lack the global DAG edit permissions (docs/deploying.md)
    access_control={role: DEPLOYERS for role in ("Op", "Admin")},
    params={
        "version": Param(None, type=["null", "string", "integer"], title="Model version"),
        "action": Param("canary", enum=["canary", "promote", "rollback"], title="Action"),
        "date": date_param("start the canary after (its evidence is the flights of the following days)"),
        # empty means the value in include/config/deploy.yaml
        **overrides_form(DeployConfig),
        "wait_hours": Param(
            72,
            type="number",
            exclusiveMinimum=0,
            maximum=MAX_WAIT_HOURS,
            title="Roll back when no decision after (hours)",
        ),
    },
    default_args=default_args(),
)
def deploy_model():
    @task.branch
    def plan(**context) -> str:
        return mlops_airflow.tasks.deploy_model.plan(context)

    @task(multiple_outputs=False)
    def start_canary(**context) -> dict:
        return mlops_airflow.tasks.deploy_model.start_canary(context)

    # looks every POKE_S, deferred in between (no slot held); the run's wait_hours (at most MAX_WAIT_HOURS) ends
    # the wait with a roll-back
    evidence = EvidenceSensor(
        task_id="wait_for_evidence", look=mlops_airflow.tasks.deploy_model.evidence_ready, poke_interval=POKE_S
    )

    # asked only when deploy.yaml's approval is on and the evidence says promote (skipped otherwise); waits for a
    # person's answer in the awaiting_input state (no worker slot); the deadline answers "Roll back"
    approval = ApprovalTask(
        task_id="approve_promotion",
        ask=mlops_airflow.tasks.deploy_model.ask_approval,
        options=promotion_approval.OPTIONS,
        default=promotion_approval.DEFAULT,
    )

    # after the evidence, and the approval when one was asked (skipped: not asked)
    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, multiple_outputs=False)
    def decide(**context) -> dict:
        return mlops_airflow.tasks.deploy_model.decide(context)

    @task(trigger_rule=TriggerRule.ONE_FAILED, multiple_outputs=False)
    def rollback_on_failure(**context) -> dict:
        return mlops_airflow.tasks.deploy_model.abandon_canary(context)

    @task(multiple_outputs=False)
    def promote_now(**context) -> dict:
        return mlops_airflow.tasks.deploy_model.promote_now(context)

    @task(multiple_outputs=False)
    def rollback_now(**context) -> dict:
        return mlops_airflow.tasks.deploy_model.rollback_now(context)

    route = plan()
    decision = decide()
    route >> start_canary() >> evidence >> approval
    [evidence, approval] >> decision
    [evidence, approval, decision] >> rollback_on_failure()
    route >> promote_now()
    route >> rollback_now()


deploy_model()
