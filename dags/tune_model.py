"""
### tune_model

A hyperparameter search of the model's kind (`train.kind` of `params.yaml`) over the space in `params.yaml`'s
`tune:` section, its trials run as Airflow tasks side by side in the `tuning` pool. Started by hand with the form
below, or by `monitor_model` (monitoring.yaml `tuning:`).

**prepare** (the training set, built once for every trial: the window ending at the end date, the split training
uses; the study's settings recorded in the lake and its run in MLflow) → per round: **ask_<r>** (Optuna's sampler
proposes the round's trials; the first is `params.yaml`'s own values; none once the budget of trials or minutes is
spent) → **trials_<r>** (one mapped task per trial: trained in one process, scored on the validation split, a
child run of the study's run in MLflow; a failed trial fails alone, no retries) → **tell_<r>** (the results back
to the study, whatever the trials' states) → … → **finish** (the best trial against the defaults, the trials
table: the lake's `tuning/<study>/result.json` and `tuning/latest.json`, the MLflow run, Slack) → **then_train**
(the form's "Then train": **trigger_train_model** on the study's end date, "parameters: latest study if better";
`monitor_model` starts studies so, when retraining on the current parameters failed the gate twice). Beside it,
**close** (whatever the end): a study left without a result has its MLflow run ended as FAILED.

The rounds are a fixed chain of `MAX_ROUNDS` in the DAG (the form's `rounds` asks fewer; a round past the
budget asks nothing and its trials are skipped): one run holds the whole study (one grid to watch, one run to
clear), where a DAG that triggered its own next run would spread it over many. `train_model`'s form choice
"parameters: latest study" trains with the best trial's parameters.
"""

from __future__ import annotations

import math

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, TriggerRule, dag, task

import mlops_airflow.tasks.tune_model
from include.mlops.train.params import SETTINGS, TUNE
from include.mlops.train.params import load as load_params
from mlops_airflow.blocks.assets import model_dags
from mlops_airflow.blocks.defaults import default_args, end_date_param, schedule_window
from mlops_airflow.blocks.forms import values_form

MAX_ROUNDS = 6
PARAMS = load_params()
TUNING = PARAMS.get(TUNE)  # None: params.yaml has no tune: section, and there is no DAG (the end of this file)
SEARCH = {k: TUNING[k] for k in ("trials", "minutes", "trials_per_round", "seed")} if TUNING else {}
ROUNDS = min(MAX_ROUNDS, math.ceil(SEARCH["trials"] / SEARCH["trials_per_round"])) if TUNING else 1
DAGS = model_dags()


@dag(
    dag_id=DAGS["tune"],  # from the declaration (the flights model: tune_model)
    schedule=None,
    start_date=schedule_window()["start_date"],
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["training", "tuning", "optuna", "mlflow"],
    params={
        **values_form(
            SEARCH,
            {"trials": "Trials (budget)", "minutes": "Minutes (budget)", "trials_per_round": "Trials per round"},
            SETTINGS[TUNE],
        ),
        "rounds": Param(ROUNDS, type="integer", minimum=1, maximum=MAX_ROUNDS, title="Rounds"),
        "window_days": Param(PARAMS["train"]["window_days"], title="Window (days)", **SETTINGS["train"]["window_days"]),
        "num_boost_round": Param(
            PARAMS["train"]["num_boost_round"],
            title="Boosting rounds per trial",
            description="Each trial's size (with the window): params.yaml's train.num_boost_round by default.",
            **SETTINGS["train"]["num_boost_round"],
        ),
        "end_date": end_date_param(),
        "train_after": Param(
            False,
            type="boolean",
            title="Then train",
            description="When the study ends: train_model on the same end date with the study's best parameters if "
            "they beat params.yaml's by tune.margin, else params.yaml's (monitoring starts its studies so).",
        ),
        "reason": Param("manual", type="string", title="Reason", description="Why this study runs."),
    },
    default_args=default_args(),
)
def tune_model():
    """The study's DAG (made only when params.yaml has a ``tune:`` section: without one there is nothing to search,
    and monitoring retrains instead)."""

    @task(multiple_outputs=False)
    def prepare(**context) -> dict:
        return mlops_airflow.tasks.tune_model.prepare(context)

    @task(multiple_outputs=False)
    def finish(**context) -> dict:
        return mlops_airflow.tasks.tune_model.finish(context)

    before = prepare()
    for r in range(MAX_ROUNDS):

        @task(task_id=f"ask_{r}", multiple_outputs=False)
        def ask(r=r, **context) -> list:
            return mlops_airflow.tasks.tune_model.ask(context, r)

        # each trial its own task instance in the tuning pool; a failed one fails alone
        @task(task_id=f"trials_{r}", pool="tuning", retries=0, multiple_outputs=False)
        def trial(proposal: dict, **context) -> dict:
            return mlops_airflow.tasks.tune_model.trial(context, proposal)

        @task(task_id=f"tell_{r}", trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
        def tell(r=r, **context) -> dict:
            return mlops_airflow.tasks.tune_model.tell(context, r)

        proposals = ask()
        trials = trial.expand(proposal=proposals)
        told = tell()
        before >> proposals
        trials >> told
        before = told

    @task.short_circuit
    def then_train(**context) -> bool:
        return mlops_airflow.tasks.tune_model.then_train(context)

    trigger_train_model = TriggerDagRunOperator(
        task_id="trigger_train_model",
        trigger_dag_id=DAGS["train"],
        conf={
            "reason": "{{ ti.xcom_pull(task_ids='then_train', key='train')['reason'] }}",
            "end_date": "{{ ti.xcom_pull(task_ids='then_train', key='train')['end_date'] }}",
            "parameters": "latest study if better",
        },
    )

    # the study's MLflow run never left RUNNING when a round or finish failed for good
    @task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
    def close(**context) -> str | None:
        return mlops_airflow.tasks.tune_model.close(context)

    finished = finish()
    before >> finished
    finished >> close()
    finished >> then_train() >> trigger_train_model


if TUNING:
    tune_model()
