"""
### train_model

Trains the declared model (`include/config/datasets.yaml`'s `models:`) of the kind `params.yaml` names:
LightGBM data-parallel across Horovod worker processes, or the baseline (a logistic regression) in one process;
tracks the run in MLflow and registers the model as a new version under the declared name (`flight_delay`).

Runs when ingestion publishes curated flights (Asset `curated_flights`) until the first champion exists
(once at least `min_days` days are curated); after that when `monitor_model` detects drift or decay (the
reason is in the conf), or by hand with the form below (window, workers, hyper-parameters, reason).

Tasks: **should_train** (skips the run when too few days are curated, or when new data alone started it and a
champion already serves) → **build_training_set** (flights joined
with weather, features known before departure only, time-ordered split, fingerprint; staged in the lake) →
**train** (the Horovod job, bounded by a timeout, in the `horovod` pool) → **register** (metrics, parameters,
data fingerprint, code version, feature importance; a new model version) → **evaluation_gate** (candidate
against the champion on the newest held-out days: AUC floor, change against the champion, per-origin and
per-carrier slices, calibration; thresholds from `include/config/gate.yaml`, overridable below; a pass makes
the version the `challenger`, unless another version's rollout runs: then it waits, queued; a failure leaves
every alias alone; Slack gets the decision and the report) → **trigger_deploy_model** with the version, when the
gate passed. When it failed and monitoring started the run on a decayed champion, **way_back** weighs the
earlier champions on the same held-out days, and one that beats the champion by the gate's margin goes to
`deploy_model` (**trigger_way_back**: the same rollout, shadow and ramp).
"""

from __future__ import annotations

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task

import mlops_airflow.tasks.train_model
from include.mlops.evaluate.config import GateConfig
from include.mlops.train.params import HOSTS, KINDS, SETTINGS, default_hosts
from include.mlops.train.params import load as load_params
from mlops_airflow.blocks.assets import model_dags, training_inputs
from mlops_airflow.blocks.defaults import default_args, end_date_param, schedule_window
from mlops_airflow.blocks.forms import overrides_form, values_form
from mlops_airflow.blocks.operators import HorovodTrainOperator

PARAMS = load_params()  # params.yaml: the defaults of every field below but the run's own (end date, hosts, reason)
MODEL_SECTIONS = [s for s in PARAMS if s in KINDS.values()]  # the model kinds' sections the file holds
TITLES = {
    "kind": "Model kind",
    "window_days": "Window (days)",
    "min_days": "Minimum curated days",
    "workers": "Horovod workers",
    "num_boost_round": "Boosting rounds",
    "timeout_minutes": "Job timeout (minutes)",
}
GATE_TITLES = {
    "min_auc": "AUC floor",
    "max_auc_drop": "tolerated AUC drop vs champion",
    "max_ece": "max calibration error",
    "min_slice_rows": "min flights per judged slice",
    "max_slice_auc_drop": "tolerated AUC drop per slice",
}


# where a run's model parameters come from (tasks.train_model.model_values)
PARAMETERS = ["params.yaml", "latest study", "latest study if better"]
DAGS = model_dags()  # this model's DAG ids (include/config/datasets.yaml)


@dag(
    dag_id=DAGS["train"],  # from the declaration (the flights model: train_model)
    schedule=training_inputs(),
    start_date=schedule_window()["start_date"],
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["training", "horovod", "lightgbm", "mlflow"],
    render_template_as_native_obj=True,
    params={
        **values_form(PARAMS["train"], TITLES, SETTINGS["train"]),
        "end_date": end_date_param(),
        "hosts": Param(
            default_hosts(),  # the deployment's (MLOPS_HOROVOD_HOSTS, checked): scheduled runs take it
            type=["null", "string"],
            pattern=HOSTS,
            title="Hosts",
            description="Horovod host list, e.g. 'node1:4,node2:4' (ranks over SSH); empty means this worker. "
            "Default: MLOPS_HOROVOD_HOSTS.",
        ),
        "parameters": Param(
            PARAMETERS[0],
            enum=PARAMETERS,
            title="Parameters",
            description="The model's parameters: this form's (params.yaml's defaults), the latest tuning study's best "
            "(tune_model), or the study's best only when it beats the defaults by tune.margin (monitoring's "
            "retraining); read when the run starts.",
        ),
        "reason": Param(
            "scheduled",
            type="string",
            title="Reason",
            description="Why this model is trained (scheduled, manual, drift, decay, ...).",
        ),
        # each model kind's parameters of params.yaml (a run takes those of its kind)
        **{k: v for section in MODEL_SECTIONS for k, v in values_form(PARAMS[section], {}, SETTINGS[section]).items()},
        # evaluation gate: empty means the value in include/config/gate.yaml
        **overrides_form(GateConfig, prefix="gate_", title_prefix="Gate: ", titles=GATE_TITLES),
    },
    default_args=default_args(),
)
def train_model():
    @task.short_circuit
    def should_train(**context) -> bool:
        return mlops_airflow.tasks.train_model.should_train(context)

    @task(multiple_outputs=False)
    def build_training_set(**context) -> dict:
        return mlops_airflow.tasks.train_model.build_training_set(context)

    train = HorovodTrainOperator(
        task_id="train",
        workers="{{ params.workers }}",
        threads_per_worker="{{ params.threads_per_worker }}",
        hosts="{{ params.hosts }}",
        num_boost_round="{{ params.num_boost_round }}",
        # the run's values of its kind's parameters, or the latest study's (build_training_set chose them)
        model_params="{{ ti.xcom_pull(task_ids='build_training_set')['model_params'] }}",
        timeout_s="{{ params.timeout_minutes * 60 }}",
    )

    @task(multiple_outputs=False)
    def register(**context) -> dict:
        return mlops_airflow.tasks.train_model.register(context)

    @task(multiple_outputs=False)
    def evaluation_gate(**context) -> dict:
        return mlops_airflow.tasks.train_model.gate(context)

    @task.short_circuit
    def gate_passed(decision: dict) -> bool:
        return bool(decision["passed"])

    trigger_deploy_model = TriggerDagRunOperator(
        task_id="trigger_deploy_model",
        trigger_dag_id=DAGS["deploy"],
        conf={
            "version": "{{ ti.xcom_pull(task_ids='evaluation_gate')['version'] }}",
            "action": "canary",
            "date": "{{ ti.xcom_pull(task_ids='evaluation_gate')['data_date'] }}",
        },
    )

    @task.short_circuit
    def gate_failed(decision: dict) -> bool:
        return not decision["passed"]

    @task.short_circuit(multiple_outputs=False)
    def way_back(**context):
        return mlops_airflow.tasks.train_model.way_back(context)

    trigger_way_back = TriggerDagRunOperator(
        task_id="trigger_way_back",
        trigger_dag_id=DAGS["deploy"],
        conf={
            "version": "{{ ti.xcom_pull(task_ids='way_back')['version'] }}",
            "action": "canary",
            "date": "{{ ti.xcom_pull(task_ids='way_back')['data_date'] }}",
        },
    )

    decision = evaluation_gate()
    should_train() >> build_training_set() >> train >> register() >> decision
    gate_passed(decision) >> trigger_deploy_model
    gate_failed(decision) >> way_back() >> trigger_way_back


train_model()
