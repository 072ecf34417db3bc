"""Rerunning a quarantined date with dag.test(): without a new drop the run fails at once (not after the sensor's
6-hour timeout) saying what to do; after ``release`` the same file is ingested again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from include.mlops.simulate.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]
DATE = "2013-01-23"
Q = f"quarantine/flights/date={DATE}"
LANDING = f"landing/flights/date={DATE}"
PRODUCTION_SENSOR_TIMEOUT_S = 6 * 3600


def test_rerun_of_a_quarantined_date_fails_fast_then_release_ingests_it(run_dag, lake, slack, monkeypatch, tmp_path):
    import mlops_airflow.blocks.defaults as defaults

    # the sensor as production has it (the tests' 60 s timeout would make any wait look fast)
    monkeypatch.setattr(defaults, "SENSOR_TIMEOUT_S", PRODUCTION_SENSOR_TIMEOUT_S)
    from airflow.dag_processing.dagbag import DagBag

    sensor = DagBag(dag_folder=str(ROOT / "dags")).get_dag("ingest_flights").get_task("flights.wait_for_drop")
    assert sensor.timeout == PRODUCTION_SENSOR_TIMEOUT_S
    # a suite whose row-count rule is wrong (a good day has ~1000 flights) quarantines a good drop
    wrong = tmp_path / "expectations"
    shutil.copytree(ROOT / "expectations", wrong)
    suite = json.loads((wrong / "flights.json").read_text())
    rule = next(e for e in suite["expectations"] if e["type"] == "expect_table_row_count_to_be_between")
    rule["kwargs"].update(min_value=1, max_value=100)
    (wrong / "flights.json").write_text(json.dumps(suite))
    monkeypatch.setenv("MLOPS_EXPECTATIONS_DIR", str(wrong))

    Upstream(lake).publish_day(DATE)
    dropped = lake.read_bytes(LANDING, "flights.csv")
    first = run_dag("ingest_flights", DATE)
    assert first.state == "failed" and first.tasks["flights.validate"] == ("failed", 1), first
    assert lake.read_bytes(Q, "flights.csv") == dropped and not lake.ls(LANDING)

    # the rule is fixed; a person reruns the date without a new drop
    monkeypatch.delenv("MLOPS_EXPECTATIONS_DIR")
    slack.payloads.clear()
    t0 = time.monotonic()
    rerun = run_dag("ingest_flights", DATE)
    elapsed = time.monotonic() - t0
    assert rerun.state == "failed", rerun
    assert elapsed < 60, f"the rerun took {elapsed:.0f} s to fail"
    assert rerun.tasks["flights.wait_for_drop"] == ("failed", 1), rerun  # failed at once, no retry
    assert rerun.tasks["weather.curate"][0] == "success"  # weather was never quarantined
    (alert,) = [t for t in slack.texts() if "flights.wait_for_drop" in t]
    assert alert.startswith("[FAILURE]"), alert
    assert f"batch flights/{DATE} was quarantined" in alert and "expect_table_row_count_to_be_between" in alert
    assert lake.uri(Q) in alert and f"python -m include.mlops.ingest.ingestion release flights {DATE}" in alert
    assert "sensor" in alert and "timeout" in alert.lower()
    (ROOT / "test-output" / "ingest_rerun.json").write_text(
        json.dumps(
            {
                "rerun_failed_after_s": round(elapsed, 1),
                "sensor_timeout_s": PRODUCTION_SENSOR_TIMEOUT_S,
                "alert": alert,
            },
            indent=2,
        )
    )

    # release it as the message says, rerun: the same file is validated again and curated
    env = {k: v for k, v in os.environ.items()} | {"MLOPS_LAKE_URL": lake.url}
    out = subprocess.run(
        [sys.executable, "-m", "include.mlops.ingest.ingestion", "release", "flights", DATE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    released = run_dag("ingest_flights", DATE)
    assert released.state == "success", released
    assert released.asset_events["curated_flights"]["date"] == DATE
    assert lake.ls(Q) == ["history"]
    (stamp,) = lake.ls(Q, "history")
    assert set(lake.ls(Q, "history", stamp)) == {"report.json", "released.json"}
