"""ingest_flights end to end with dag.test(): good days, transient faults, every corrupt drop, reruns, S3."""

from __future__ import annotations

import json

import pytest

from include.mlops.simulate.plan import CORRUPT_FAULTS
from include.mlops.simulate.upstream import Upstream, day_table

CURATED = "curated/flights/date={}"
QUARANTINE = "quarantine/flights/date={}"


def test_good_day_is_curated_and_announced(run_dag, lake, slack):
    Upstream(lake).publish_day("2013-01-03")
    run = run_dag("ingest_flights", "2013-01-03")
    assert run.state == "success", run
    df = lake.read_parquet(CURATED.format("2013-01-03"), "part-00000.parquet")
    assert len(df) == len(day_table("flights", "2013-01-03"))
    assert lake.exists("curated/weather/date=2013-01-03/part-00000.parquet")
    assert not lake.exists(QUARANTINE.format("2013-01-03"))
    extra = run.asset_events["curated_flights"]
    assert extra["date"] == "2013-01-03" and extra["rows"] == len(df)
    assert extra["labelled"] == int(df["is_labelled"].sum())
    assert "curated_weather" in run.asset_events
    assert slack.payloads == []  # nothing to report on a good day


def test_rerun_of_a_good_day_is_idempotent(run_dag, lake):
    Upstream(lake).publish_day("2013-01-04")
    assert run_dag("ingest_flights", "2013-01-04").state == "success"
    first = lake.read_parquet(CURATED.format("2013-01-04"), "part-00000.parquet")
    again = run_dag("ingest_flights", "2013-01-04")
    assert again.state == "success", again
    assert lake.ls(CURATED.format("2013-01-04")) == ["part-00000.parquet"]
    second = lake.read_parquet(CURATED.format("2013-01-04"), "part-00000.parquet")
    assert second.equals(first) and not second.duplicated(["carrier", "flight", "origin"]).any()


def test_transient_outage_succeeds_on_retry_with_alerts(run_dag, lake, slack):
    Upstream(lake).publish_day("2013-01-05", fault="unavailable", failures=2)
    run = run_dag("ingest_flights", "2013-01-05")
    assert run.state == "success", run
    assert run.tasks["flights.extract"] == ("success", 3)  # two failed reads, third try succeeds
    assert lake.exists(CURATED.format("2013-01-05"), "part-00000.parquet")
    retries = [t for t in slack.texts() if t.startswith("[RETRY]")]
    assert len(retries) == 2, slack.texts()
    assert "flights.extract" in retries[0] and "date 2013-01-05" in retries[0]
    assert "temporarily unavailable upstream" in retries[0]
    assert "http://localhost:8080/dags/ingest_flights/runs/" in retries[0]


def test_late_drop_is_waited_for(run_dag, lake):
    drops = Upstream(lake).publish_day("2013-01-06", fault="late", delay_s=3)
    run = run_dag("ingest_flights", "2013-01-06")
    drops[-1].wait(10)
    assert run.state == "success", run
    assert lake.exists(CURATED.format("2013-01-06"), "part-00000.parquet")


def test_a_drop_that_never_comes_times_the_sensor_out_with_an_alert(run_dag, lake, slack, monkeypatch):
    """The flights drop of the day never arrives: the sensor gives up after MLOPS_SENSOR_TIMEOUT_S, the task
    fails without retries and Slack gets one [FAILURE] message naming it."""
    import importlib
    import time

    import mlops_airflow.blocks.defaults as defaults

    Upstream(lake).publish("2013-01-28", "weather")  # weather arrives, flights never do
    with monkeypatch.context() as m:
        m.setenv("MLOPS_SENSOR_TIMEOUT_S", "4")  # read when the DAG file is parsed
        importlib.reload(defaults)
        try:
            t0 = time.monotonic()
            run = run_dag("ingest_flights", "2013-01-28")
            took = time.monotonic() - t0
        finally:
            m.undo()
            importlib.reload(defaults)
    assert defaults.SENSOR_TIMEOUT_S == 60  # the suite's own setting is back
    assert run.state == "failed", run
    assert run.tasks["flights.wait_for_drop"][0] == "failed" and run.tasks["flights.extract"][0] == "upstream_failed"
    assert run.tasks["weather.curate"][0] == "success"
    assert took < 60, took  # gave up after its own timeout, not the suite's
    [alert] = [p for p in slack.payloads if p["text"].startswith("[FAILURE]")]
    text = alert["text"]
    assert text.startswith(
        "[FAILURE] Task flights.wait_for_drop failed\nDAG `ingest_flights`, task `flights.wait_for_drop`"
    ), text
    assert "date 2013-01-28" in text and "AirflowSensorTimeout" in text, text
    assert not [t for t in slack.texts() if t.startswith("[RETRY]")]
    assert not lake.exists(CURATED.format("2013-01-28"))


CORRUPT_DATES = {kind: f"2013-01-{10 + i:02d}" for i, kind in enumerate(CORRUPT_FAULTS)}


@pytest.mark.parametrize("kind", CORRUPT_FAULTS)
def test_corrupt_drop_is_quarantined_and_alerted(kind, run_dag, lake, slack):
    date = CORRUPT_DATES[kind]
    Upstream(lake).publish_day(date, fault=kind)
    dropped = lake.read_bytes(f"landing/flights/date={date}", "flights.csv")
    run = run_dag("ingest_flights", date)
    assert run.state == "failed", run
    assert run.tasks["flights.validate"] == ("failed", 1)  # rejected batches are not retried
    assert run.tasks["flights.curate"][0] == "upstream_failed"
    assert run.tasks["weather.curate"][0] == "success"  # the other data set is unaffected
    assert not lake.exists(CURATED.format(date))
    assert "curated_flights" not in run.asset_events
    q = QUARANTINE.format(date)
    assert lake.read_bytes(q, "flights.csv") == dropped
    report = lake.read_json(q, "report.json")
    assert report["dataset"] == "flights" and report["date"] == date and report["failed_rules"]
    alerts = [p for p in slack.payloads if p["text"].startswith("[QUARANTINE]")]
    assert len(alerts) == 1, slack.texts()
    text = alerts[0]["text"]
    assert f"flights/{date}" in text and "flights.validate" in text and report["failed_rules"][0].split("(")[0] in text
    assert lake.uri(q) in text
    assert alerts[0]["blocks"][0]["text"]["text"].startswith(":no_entry:")
    assert not [t for t in slack.texts() if t.startswith("[RETRY]")]


def test_without_slack_connection_alerts_go_to_the_log(run_dag, lake, capfd, caplog):
    Upstream(lake).publish_day("2013-01-25", fault="extra_column")
    run = run_dag("ingest_flights", "2013-01-25")
    assert run.state == "failed"
    out = capfd.readouterr()
    logged = out.out + out.err + caplog.text
    assert "[slack: not configured, message logged instead]" in logged
    assert "[QUARANTINE] Batch flights/2013-01-25 quarantined" in logged


def test_manual_trigger_with_date_param(run_dag, lake):
    Upstream(lake).publish_day("2013-01-27")
    run = run_dag("ingest_flights", "2013-03-01", conf={"date": "2013-01-27"})
    assert run.state == "success", run
    assert run.asset_events["curated_flights"]["date"] == "2013-01-27"


def test_good_day_against_s3(run_dag, moto_server, monkeypatch):
    import boto3

    from include.mlops.core.lake import Lake

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="mlops-lake")
    monkeypatch.setenv("MLOPS_LAKE_URL", "s3://mlops-lake/e2e")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": moto_server, "region_name": "us-east-1"},
            }
        ),
    )
    lake = Lake(
        "s3://mlops-lake/e2e",
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": moto_server, "region_name": "us-east-1"},
    )
    Upstream(lake).publish_day("2013-01-08")
    run = run_dag("ingest_flights", "2013-01-08")
    assert run.state == "success", run
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="mlops-lake", Prefix="e2e/curated/")["Contents"]}
    assert keys == {
        "e2e/curated/flights/date=2013-01-08/part-00000.parquet",
        "e2e/curated/weather/date=2013-01-08/part-00000.parquet",
    }
    lake.fs.invalidate_cache()
    df = lake.read_parquet(CURATED.format("2013-01-08"), "part-00000.parquet")
    assert len(df) == len(day_table("flights", "2013-01-08"))
    assert run.asset_events["curated_flights"]["uri"] == (
        "s3://mlops-lake/e2e/curated/flights/date=2013-01-08/part-00000.parquet"
    )
