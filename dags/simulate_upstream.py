"""
### simulate_upstream — a stand-in for the real upstream system

**A simulator, not part of the lifecycle.** It plays the upstream system (and the clients of the prediction
service) from the declared sources (`source:` of each data set in `datasets.yaml`: the 2013 flights and weather
by default), so that the whole lifecycle can be driven from this UI. A real deployment has its own upstream that
drops `<dataset>.csv` then `_SUCCESS` into `landing/`, and does not run this DAG.

For each day of the range (`start_date` .. `end_date`, within the sources' declared days; one day without an
end), in date order:

1. **traffic** (with `replay_traffic`, when `MLOPS_SERVE_URL` names the prediction service, e.g.
   `http://127.0.0.1:8000` for `make serve`, and it answers with a model deployed): the day's rows of the scored
   data set (the scheduled flights) are sent as prediction requests before their outcome is known, as the demo
   does; `MLOPS_SERVE_TOKEN`, when set, goes with them as `Authorization: Bearer …`; requests the service
   refuses fail the day before anything is dropped;
2. **drop**: the day's rows of every data set with a source (the flights and the weather) written into
   `landing/<dataset>/date=…/`, then `_SUCCESS`.

A `fault` (one of the simulator's kinds: `late`, `unavailable` survive ingestion; `missing_column`, `wrong_types`,
`null_keys`, `duplicates`, `out_of_range`, `empty`, `truncated`, `extra_column` are quarantined) is injected into
the `fault_dataset` drop (default: the scored data set) of each of `fault_days`. It writes only to `landing/` and
the service.

Then ingest the days: trigger the data set's ingestion DAG (`ingest_flights`) for one of them, or backfill it
over the range from its trigger form.

**The replay** (`make replay`; `replay: true` in `include/config/schedule.yaml` or `MLOPS_REPLAY=true`): the DAG
runs on the daily schedule of the window (`MLOPS_START_DATE` .. `MLOPS_END_DATE`, with catch-up), one run at a
time; each run is its logical date's day, with its traffic and no fault. **wait_for_turn** holds the day
(deferred, no slot taken) until the day before is ingested (curated or quarantined) and, once a model serves,
monitored, and no run of the model's training or monitoring DAG (`train_model`, `monitor_model`) is in flight (nor
of its deployment DAG, `deploy_model`, unless it is a canary waiting for traffic), so the scheduler advances the
days in order as fast as the lifecycle follows. A manual run does not wait.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

import mlops_airflow.tasks.simulate_upstream
from include.mlops.simulate.plan import FAULTS, replayed
from mlops_airflow.blocks.defaults import default_args, replay, schedule_window
from mlops_airflow.blocks.sensors import ReplayTurnSensor

SOURCE = replayed()  # the declared data sets with a source (datasets.yaml), the days they cover
DAYS = f"within the source data: {SOURCE.days}"
FIRST = SOURCE.first.isoformat() if SOURCE.first else None
REPLAY = replay()
TURN_TIMEOUT_S = 6 * 3600  # a day whose turn has not come in six hours fails (a stuck ingestion, a hung training)


@dag(
    # by hand (the form below); in the replay also every day of the window
    schedule="@daily" if REPLAY["on"] else None,
    **schedule_window(),
    max_active_runs=1,
    doc_md=__doc__,
    tags=["simulator", "upstream"],
    params={
        "start_date": Param(
            FIRST,
            type="string" if FIRST else ["null", "string"],
            format="date",
            title="First day",
            description=f"The first day to publish (YYYY-MM-DD), {DAYS}.",
        ),
        "end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Last day",
            description=f"The last day to publish, {DAYS}; empty: the first day only.",
        ),
        "fault": Param(
            None,
            type=["null", "string"],
            enum=[None, *FAULTS],
            title="Fault to inject",
            description="Empty: good drops only. late and unavailable are transient (ingestion survives "
            "them); the others are corrupt drops ingestion quarantines.",
        ),
        "fault_days": Param(
            [],
            type="array",
            items={"type": "string", "format": "date"},
            title="Days with the fault",
            description="The days (YYYY-MM-DD, one per line) whose drop carries the fault; within the range.",
        ),
        "fault_dataset": Param(
            None,
            type=["null", "string"],
            enum=[None, *SOURCE.datasets],
            title="Drop with the fault",
            description=f"Empty: the data set the model scores ({SOURCE.scored}).",
        ),
        "replay_traffic": Param(
            True,
            type="boolean",
            title="Replay the day as prediction requests first",
            description="Send each day's rows of the scored data set (the scheduled flights) to the prediction "
            "service at MLOPS_SERVE_URL before their outcomes are published (skipped when it is unset or the "
            "service has no model yet).",
        ),
    },
    default_args=default_args(),
)
def simulate_upstream():
    @task
    def plan(**context) -> list[dict]:
        return mlops_airflow.tasks.simulate_upstream.plan(context)

    @task(max_active_tis_per_dagrun=1, multiple_outputs=False)  # one day at a time, as the days come
    def publish_day(day: dict, **context) -> dict:
        return mlops_airflow.tasks.simulate_upstream.publish_day(day, context)

    days = plan()
    wait_for_turn = ReplayTurnSensor(
        task_id="wait_for_turn",
        look=mlops_airflow.tasks.simulate_upstream.replay_turn,
        poke_interval=REPLAY["poke_s"],
        timeout=TURN_TIMEOUT_S,
    )
    days >> wait_for_turn >> publish_day.expand(day=days)


simulate_upstream()
