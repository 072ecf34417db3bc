"""A run that does nothing says so. A run of ingest_flights dated outside the schedule's window (or for a `date`
outside it) fails its first task, check_window, naming the window and the settings that move it: with the window's
start on the DAG, Airflow 3 creates no task instance for a run dated before it, and the run ended green having
curated nothing. A train_model run that finds no curated day of its data set fails naming the data set and the
days searched, where it used to skip every task and end green."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.mlops.core.lake import Lake
from include.mlops.train import pipeline

WINDOW = "the window of data dates 2013-01-01 .. (no end)"  # tests/conftest.py: MLOPS_START_DATE=2013-01-01


def test_a_run_dated_before_the_window_fails_naming_it(run_dag, lake, slack):
    run = run_dag("ingest_flights", "2012-12-31")
    assert run.state == "failed", run
    assert run.tasks == {"check_window": ("failed", 1)}, run  # Airflow makes no other task of it; none retried
    [alert] = [p["text"] for p in slack.payloads if p["text"].startswith("[FAILURE]")]
    assert f"the run's logical date 2012-12-31 is before {WINDOW}" in alert, alert
    assert "MLOPS_START_DATE" in alert and "schedule.yaml" in alert, alert
    assert not lake.exists("curated/flights/date=2012-12-31")


def _check(ds: str, date: str | None = None) -> str:
    from mlops_airflow.tasks.ingest import check_window

    return check_window({"ds": ds, "params": {"date": date}})


@pytest.mark.parametrize(
    "ds, date, end, error",
    [
        ("2013-01-05", "2012-12-30", None, f"its data date 2012-12-30 is before {WINDOW}"),
        (
            "2013-01-05",
            "2013-02-01",
            "2013-01-31",
            "its data date 2013-02-01 is after the window of data dates 2013-01-01 .. 2013-01-31",
        ),
        ("2013-02-01", None, "2013-01-31", "the run's logical date 2013-02-01 is after the window"),  # a backfill
    ],
    ids=["date-param-before", "date-param-after-end", "logical-date-after-end"],
)
def test_a_data_date_outside_the_window_fails_check_window(monkeypatch, ds, date, end, error):
    if end:
        monkeypatch.setenv("MLOPS_END_DATE", end)
    with pytest.raises(AirflowFailException, match="MLOPS_START_DATE / MLOPS_END_DATE") as exc:
        _check(ds, date)
    assert error in str(exc.value), exc.value
    # a backfill or a `date` param gives the run its other tasks: the first of each data set ingests nothing
    from mlops_airflow.tasks.ingest import drop_is_ready

    with pytest.raises(AirflowSkipException) as skipped:
        drop_is_ready("flights", {"ds": ds, "params": {"date": date}, "run_id": "backfill__x"})
    assert str(skipped.value) == str(exc.value)


def test_a_data_date_in_the_window_passes_check_window(monkeypatch):
    monkeypatch.setenv("MLOPS_END_DATE", "2013-01-31")
    assert _check("2013-01-31") == "2013-01-31"
    assert _check("2013-01-20", "2013-01-01") == "2013-01-01"  # the data date is the `date` param's


def test_no_curated_day_of_the_data_set_is_an_error_naming_it(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    with pytest.raises(pipeline.NotEnoughData) as exc:
        pipeline.training_dates(lake)
    assert "no curated day of data set 'flights' on any day at " + lake.uri("curated/flights") in str(exc.value)
    with pytest.raises(pipeline.NotEnoughData, match="'flights' up to 2012-06-01"):
        pipeline.training_dates(lake, "2012-06-01")


def test_a_training_run_without_data_fails_naming_the_data_set(run_dag, slack, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LAKE_URL", (tmp_path / "empty-lake").as_uri())
    monkeypatch.setenv("MLOPS_MODEL_NAME", "fault_no_data")
    run = run_dag("train_model", "2013-02-21", conf={"end_date": "2013-02-21", "min_days": 3})
    assert run.state == "failed", run
    assert run.tasks["should_train"] == ("failed", 1), run  # no retry: a retry finds no more data
    assert run.tasks["train"][0] == "upstream_failed", run
    [alert] = [p["text"] for p in slack.payloads if p["text"].startswith("[FAILURE]")]
    assert "no curated day of data set 'flights' up to 2013-02-21" in alert, alert
