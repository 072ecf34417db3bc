"""
### monitor_model

Watches the champion every day, after ingestion (scheduled on its Assets: a day's flights and weather curated,
or its flights quarantined): data drift of its features (KS, PSI, normed Wasserstein for
numeric features; PSI and Jensen-Shannon for categories; missing shares), prediction drift of the scores it
served, the delay rate, and live performance (its logged predictions joined with the outcomes ingestion
brought in). The reference is the profile of the champion's training data saved with its model version.

Tasks: **service_health** (the prediction service named by `MLOPS_SERVE_URL`, read from its `/metrics` for the
period since the previous run: requests, latency p50/p99, 5xx and rejected (4xx) rates, per route and per
arm/version; a threshold of the `service:` block crossed, or the service not answering, sends a Slack alert:
never a retraining; unset: "not configured") → **report** (runs whatever service_health's outcome; for each
data date the run's Asset events name, or the `date` param / logical date of a
manual run: HTML with per-feature plots and JSON in `reports/monitoring/date=…/`, the last date's with the
service's section; skipped while there is no champion) → **check_thresholds**
(a signal fires after `consecutive_days` days in a row; held back during the cool-down after the last
trigger and while a canary runs; a fire sends a Slack drift alert with the features, numbers and report
link; otherwise the run ends here) → **remedy** → **trigger_train_model** with the reason in the conf, or, when
the retrainings of the last `tuning.after_failed_retrains` triggers each failed the gate and the way back found
no better earlier version, **trigger_tune_model** (a tuning study, which then starts `train_model` with its best
parameters when they beat `params.yaml`'s). Beside them,
**audit_check**: the audit trail's hash chain against its head in the registry (broken: a Slack alert, the task
fails), and the registry's champion against the trail's (changed in MLflow by hand: recorded, Slack told).

Thresholds: `include/config/monitoring.yaml` (the service's under `service:`, not in the form); the form below
overrides the main ones per run.
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import TriggerRule, dag, task

import mlops_airflow.tasks.monitor_model
from include.mlops.monitor.config import MonitorConfig
from mlops_airflow.blocks.assets import model_dags, monitoring_inputs
from mlops_airflow.blocks.defaults import date_param, default_args, schedule_window
from mlops_airflow.blocks.forms import overrides_form

TITLES = {
    "window_days": "Window (days) compared with the reference",
    "min_drifted_features": "Drifted features that raise the data-drift signal",
    "consecutive_days": "Consecutive days a signal must be up to fire",
    "cooldown_days": "Cool-down after a retraining trigger (days)",
    "max_auc_drop": "Decay: tolerated live AUC drop",
}


DAGS = model_dags()  # this model's DAG ids (include/config/datasets.yaml)


def _decided(field: str) -> str:
    """A field of check_thresholds' decision (its XCom), as a template the trigger renders."""
    return "{{ ti.xcom_pull(task_ids='check_thresholds', key='decision')['" + field + "'] }}"


@dag(
    dag_id=DAGS["monitor"],  # from the declaration (the flights model: monitor_model)
    schedule=monitoring_inputs(),
    start_date=schedule_window()["start_date"],
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["monitoring", "drift", "performance"],
    render_template_as_native_obj=True,
    params={
        "date": date_param("monitor"),
        # empty means the value in include/config/monitoring.yaml
        **overrides_form(MonitorConfig, titles=TITLES),
    },
    default_args=default_args(),
)
def monitor_model():
    @task(multiple_outputs=False)
    def service_health(**context) -> dict:
        return mlops_airflow.tasks.monitor_model.service_health(context)

    # the drift path never waits on the service's health
    @task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
    def report(**context) -> dict:
        return mlops_airflow.tasks.monitor_model.report(context)

    @task.short_circuit
    def check_thresholds(**context) -> bool:
        return mlops_airflow.tasks.monitor_model.check_thresholds(context)

    @task.branch
    def remedy(**context) -> str:
        return mlops_airflow.tasks.monitor_model.remedy(context)

    trigger_train_model = TriggerDagRunOperator(
        task_id="trigger_train_model",
        trigger_dag_id=DAGS["train"],
        trigger_run_id=_decided("run_id"),  # the trigger's record names it: its outcome is found
        skip_when_already_exists=True,  # a retry after the run was made
        conf={
            "reason": _decided("reason"),
            "end_date": _decided("date"),
            # the latest tuning study's parameters when they beat params.yaml's by tune.margin
            "parameters": "latest study if better",
        },
    )
    # retraining failed the gate (monitoring.yaml tuning:): a study first; it then starts train_model itself
    trigger_tune_model = TriggerDagRunOperator(
        task_id="trigger_tune_model",
        trigger_dag_id=DAGS["tune"],
        trigger_run_id=_decided("run_id"),
        skip_when_already_exists=True,
        conf={
            "reason": _decided("reason"),
            "end_date": _decided("date"),
            "train_after": True,
        },
    )

    # the audit trail's chain and the registry's champion against it: apart from the rest (never holds it up)
    @task(multiple_outputs=False)
    def audit_check(**context) -> dict:
        return mlops_airflow.tasks.monitor_model.audit_check(context)

    service_health() >> report() >> check_thresholds() >> remedy() >> [trigger_train_model, trigger_tune_model]
    audit_check()


monitor_model()
