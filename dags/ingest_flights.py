"""
### ingest_flights

Daily ingestion of the upstream flights and weather drops (logical date = data date; backfillable).

For each data set: **wait** for the day's complete drop in `landing/` (reschedule-mode sensor, `_SUCCESS`
marker), **extract** it to `staging/` (retried with exponential backoff on upstream faults), **validate** it with
its Great Expectations suite from `expectations/`, then either **quarantine** it (`quarantine/<dataset>/date=…/`
with `report.json`, the run fails and Slack is told which rules failed) or **curate** it: typed Parquet with the
label and the UTC hour, the partition rewritten whole, and an Asset event with the date and row count.

Trigger by hand with a logical date, or with the `date` param (YYYY-MM-DD) to ingest another day.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Metadata, dag, task, task_group

import mlops_airflow.ingest_flights
from mlops_airflow.assets import CURATED
from mlops_airflow.defaults import SENSOR_POKE_S, SENSOR_TIMEOUT_S, date_param, default_args

DATASETS = ("weather", "flights")


@dag(
    schedule="@daily",
    start_date=datetime(2013, 1, 1, tzinfo=timezone.utc),
    end_date=datetime(2013, 12, 31, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["ingestion", "flights", "great-expectations"],
    params={
        "date": date_param("ingest"),
    },
    default_args=default_args(retries=3, execution_timeout=timedelta(minutes=30)),
)
def ingest_flights():
    for name in DATASETS:
        asset = CURATED[name]

        @task_group(group_id=name)
        def pipeline(dataset: str = name, asset=asset):
            @task.sensor(poke_interval=SENSOR_POKE_S, timeout=SENSOR_TIMEOUT_S, mode="reschedule",
                         exponential_backoff=False)
            def wait_for_drop(**context) -> bool:
                return mlops_airflow.ingest_flights.drop_is_ready(dataset, context)

            @task
            def extract(**context) -> dict:
                return mlops_airflow.ingest_flights.extract(dataset, context)

            @task
            def validate(**context) -> dict:
                return mlops_airflow.ingest_flights.validate(dataset, context)

            @task(outlets=[asset])
            def curate(**context):
                info = mlops_airflow.ingest_flights.curate(dataset, context)
                yield Metadata(asset, extra=info)

            wait_for_drop() >> extract() >> validate() >> curate()

        pipeline()


ingest_flights()
