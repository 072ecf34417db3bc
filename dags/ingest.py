"""
### ingest_<data set>

Daily ingestion of an upstream data set's drops (logical date = data date; backfillable): one DAG per data set
of the declaration (`include/config/datasets.yaml`, or `MLOPS_CONFIG_DIR`'s), each on its own calendar;
a data set declared `ingest_with` another is ingested by that one's DAG (`ingest_flights` ingests the flights and
the weather: a day is both drops).

**check_window**: a run whose logical date or data date is outside the window of `include/config/schedule.yaml`
fails, naming the window (and the sensors skip: nothing outside it is ingested). For each data set: **wait** for
the day's complete drop in `landing/` (a deferred sensor, `_SUCCESS`
marker), **extract** it to `staging/` (retried with exponential backoff on upstream faults), **validate** it with
its Great Expectations suite from `expectations/`, then either **quarantine** it (`quarantine/<dataset>/date=…/`
with `report.json`, the run fails and Slack is told which rules failed) or **curate** it: typed Parquet with the
label and the event-time features, the partition rewritten whole, and an Asset event with the date and row count (a
quarantine is announced as an Asset too, `quarantined_<dataset>`). The sensor waits in the triggerer (deferred),
holding no worker slot; with `MLOPS_INGEST_DEADLINE_S` set (the deployments set 8 hours), a day not curated that
long after its run was queued sends a Slack message (a deadline alert).

Trigger by hand with a logical date, or with the `date` param (YYYY-MM-DD) to ingest another day.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Metadata, TriggerRule, dag, task, task_group

import mlops_airflow.tasks.ingest
from include.mlops.core.schema import ingestion_groups
from mlops_airflow.blocks.assets import curated, quarantined
from mlops_airflow.blocks.defaults import (
    SENSOR_POKE_S,
    SENSOR_TIMEOUT_S,
    date_param,
    default_args,
    ingest_deadline,
    window_on_tasks,
)
from mlops_airflow.blocks.sensors import DropSensor

# include/config/schedule.yaml: the window of data dates, on the tasks (check_window runs in a run dated before it)
WINDOW, TASK_WINDOW = window_on_tasks()


def ingestion_dag(name: str, datasets: list[str]):
    """``ingest_<name>``: the drops of ``datasets`` for a day, each validated and curated on its own."""

    @dag(
        dag_id=f"ingest_{name}",
        schedule="@daily",
        **WINDOW,
        max_active_runs=4,
        doc_md=__doc__.replace("ingest_<data set>", f"ingest_{name}", 1)
        + f"\nThis DAG ingests: {', '.join(f'`{d}`' for d in datasets)}.\n",
        tags=["ingestion", *datasets, "great-expectations"],
        params={
            "date": date_param("ingest"),
        },
        default_args=default_args(retries=3, execution_timeout=timedelta(minutes=30), **TASK_WINDOW),
        # a day not curated within MLOPS_INGEST_DEADLINE_S of its run being queued is late: Slack hears of it
        deadline=ingest_deadline(),
    )
    def ingest():
        # no start date of its own and nothing downstream: in a run dated before the window it is the one task
        # Airflow makes, and its failure fails the run (a run's state is its leaves')
        @task(start_date=None)
        def check_window(**context) -> str:
            """Fails the run (at once, no retry) when its logical date or its data date is outside the window."""
            return mlops_airflow.tasks.ingest.check_window(context)

        check_window()
        for each in datasets:

            @task_group(group_id=each)
            # the loop variable bound as defaults, once per data set
            def pipeline(dataset: str = each, asset=curated(each), rejected=quarantined(each)):  # noqa: B008
                wait_for_drop = DropSensor(
                    task_id="wait_for_drop",
                    dataset=dataset,
                    ready=mlops_airflow.tasks.ingest.drop_is_ready,
                    poke_interval=SENSOR_POKE_S,
                    timeout=SENSOR_TIMEOUT_S,
                )

                @task(multiple_outputs=False)
                def extract(**context) -> dict:
                    return mlops_airflow.tasks.ingest.extract(dataset, context)

                @task(multiple_outputs=False)
                def validate(**context) -> dict:
                    return mlops_airflow.tasks.ingest.validate(dataset, context)

                @task(outlets=[asset])
                def curate(**context):
                    info = mlops_airflow.tasks.ingest.curate(dataset, context)
                    yield Metadata(asset, extra=info)

                @task(outlets=[rejected], trigger_rule=TriggerRule.ALL_FAILED)
                def announce_quarantine(**context):
                    """When validation rejected the drop: its quarantine announced as an Asset (monitoring reports
                    the day all the same); skipped when validation failed for any other reason."""
                    info = mlops_airflow.tasks.ingest.quarantined(dataset, context)
                    yield Metadata(rejected, extra=info)

                checked = validate()
                wait_for_drop >> extract() >> checked >> curate()
                checked >> announce_quarantine()

            pipeline()

    return ingest()


# one DAG per declared data set (or group of data sets on one calendar), named in module globals for the parser
for _name, _datasets in ingestion_groups().items():
    globals()[f"ingest_{_name}"] = ingestion_dag(_name, _datasets)
