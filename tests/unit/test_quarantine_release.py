"""Reruns after a quarantine: telling "quarantined, no new drop" from "not dropped yet", and releasing a
quarantined file back to landing/ (``python -m include.mlops.ingest.ingestion release DATASET DATE``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from include.mlops.core.config import Settings
from include.mlops.core.lake import Lake
from include.mlops.core.schema import dataset
from include.mlops.ingest import ingestion
from include.mlops.ingest.validation import BatchRejected
from include.mlops.simulate.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings.from_env()
DATE = "2013-01-09"
Q = f"quarantine/flights/date={DATE}"
LANDING = f"landing/flights/date={DATE}"


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def _quarantined(lake) -> tuple[ingestion.Batch, bytes]:
    Upstream(lake).publish(DATE, "flights", fault="duplicates")
    dropped = lake.read_bytes(LANDING, "flights.csv")
    b = ingestion.batch(dataset("flights"), DATE)
    ingestion.extract(lake, b)
    with pytest.raises(BatchRejected):
        ingestion.check(lake, b, SETTINGS)
    return b, dropped


def test_quarantine_empties_landing_and_is_recognised(lake):
    b = ingestion.batch(dataset("flights"), DATE)
    assert ingestion.quarantined_without_drop(lake, b) is None  # never dropped: just not there yet
    b, _ = _quarantined(lake)
    assert not lake.ls(LANDING)
    record = ingestion.quarantined_without_drop(lake, b)
    assert record and record["quarantine_uri"] == lake.uri(Q)
    message = ingestion.rerun_blocked_message(lake, b, record)
    assert f"batch flights/{DATE} was quarantined" in message
    assert "expect_compound_columns_to_be_unique" in message and lake.uri(Q) in message
    assert f"python -m include.mlops.ingest.ingestion release flights {DATE}" in message
    # an upstream writing a corrected drop (data file first, marker not yet) is a new drop: keep waiting
    lake.write_bytes(b"year,month\n", LANDING, "flights.csv")
    assert ingestion.quarantined_without_drop(lake, b) is None


def test_release_moves_the_file_back_and_keeps_the_report(lake):
    b, dropped = _quarantined(lake)
    report = lake.read_json(Q, "report.json")
    record = ingestion.release(lake, b)
    assert lake.read_bytes(LANDING, "flights.csv") == dropped
    assert ingestion.is_ready(lake, b)  # with its _SUCCESS marker
    assert lake.ls(Q) == ["history"]  # nothing left at the top: no longer "quarantined"
    (stamp,) = lake.ls(Q, "history")
    assert lake.read_json(Q, "history", stamp, "report.json") == report
    released = lake.read_json(Q, "history", stamp, "released.json")
    assert released["to"] == lake.uri(LANDING, "flights.csv") == record["to"]
    assert released["failed_rules"] == report["failed_rules"]
    assert ingestion.quarantined_without_drop(lake, b) is None
    # released, still bad: quarantined again, the first rejection still in history
    ingestion.extract(lake, b)
    with pytest.raises(BatchRejected):
        ingestion.check(lake, b, SETTINGS)
    assert lake.read_bytes(Q, "flights.csv") == dropped
    assert stamp in lake.ls(Q, "history")


def test_release_refuses_to_overwrite_a_drop_or_release_nothing(lake):
    b = ingestion.batch(dataset("flights"), DATE)
    with pytest.raises(FileNotFoundError, match=f"batch flights/{DATE}: nothing to release"):
        ingestion.release(lake, b)
    b, dropped = _quarantined(lake)
    Upstream(lake).publish(DATE, "flights")  # a corrected drop arrived meanwhile
    corrected = lake.read_bytes(LANDING, "flights.csv")
    with pytest.raises(FileExistsError, match="already holds a drop"):
        ingestion.release(lake, b)
    assert lake.read_bytes(LANDING, "flights.csv") == corrected and lake.read_bytes(Q, "flights.csv") == dropped


def test_release_command_line(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    _quarantined(lake)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")} | {
        "MLOPS_LAKE_URL": lake.url,
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "include.mlops.ingest.ingestion", "release", "flights", DATE]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"released flights/{DATE}: {lake.uri(LANDING, 'flights.csv')}" in out.stdout
    assert f"airflow dags test ingest_flights {DATE}" in out.stdout
    assert lake.exists(LANDING, "_SUCCESS")
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 1 and f"batch flights/{DATE}: nothing to release" in again.stderr
