"""The DAGs' schedules come from configuration (include/config/schedule.yaml and MLOPS_START_DATE / MLOPS_END_DATE
/ MLOPS_CATCHUP / MLOPS_REPLAY), never from the reference data's year; the replay puts simulate_upstream on the
daily schedule of the window. Each case parses the DAG files in a fresh interpreter with its environment.

The window's start is a fixed date (the file's, never "today"): unset or invalid, the DAG files do not parse, and
the error names the setting. ingest_flights' window is on its tasks, the scheduler reads it there, and its first
task has none, so a run dated before the window has a task that can fail it (tests/faults/test_fault_schedule_window)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = r"""
import json
from airflow.models.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag(dag_folder="dags")
assert not bag.import_errors, bag.import_errors
out = {}
for dag_id in ("simulate_upstream", "ingest_flights"):
    d = bag.dags[dag_id]
    s = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(d))  # as the scheduler has it
    w = s._time_restriction  # the window the scheduler creates runs in
    out[dag_id] = {
        "schedule": d.schedule if isinstance(d.schedule, str) else None,
        "start": w.earliest.date().isoformat(),
        "end": w.latest.date().isoformat() if w.latest else None,
        "catchup": d.catchup,
        "no_start": sorted(t.task_id for t in s.tasks if t.start_date is None),
    }
out["tasks"] = [t.task_id for t in bag.dags["simulate_upstream"].tasks]
print("RESULT " + json.dumps(out))
"""


def _parse(**env) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=base | {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"} | env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, out.stderr[-3000:]
    return json.loads(line[7:])


@pytest.mark.parametrize(
    "env, sim, ingest",
    [
        # the file's window: from its fixed start on, no catch-up, the simulator by hand only
        (
            {},
            {"schedule": None, "catchup": False, "start": "2013-01-01", "end": None},
            {"schedule": "@daily", "catchup": False, "start": "2013-01-01", "end": None},
        ),
        (
            # the replay of a 2013 window: both on the window's daily schedule, with catch-up
            {
                "MLOPS_START_DATE": "2013-02-01",
                "MLOPS_END_DATE": "2013-02-21",
                "MLOPS_CATCHUP": "true",
                "MLOPS_REPLAY": "true",
            },
            {"schedule": "@daily", "catchup": True, "start": "2013-02-01", "end": "2013-02-21"},
            {"schedule": "@daily", "catchup": True, "start": "2013-02-01", "end": "2013-02-21"},
        ),
    ],
    ids=["file", "replay"],
)
def test_schedules_come_from_configuration(env, sim, ingest):
    out = _parse(**env)
    for dag_id, want in (("simulate_upstream", sim), ("ingest_flights", ingest)):
        got = out[dag_id]
        want = dict(want)
        assert {k: got[k] for k in want} == want, (dag_id, got)
    assert out["ingest_flights"]["no_start"] == ["check_window"]  # the only task of a run dated before the window
    assert out["tasks"] == ["plan", "wait_for_turn", "publish_day"]


@pytest.fixture
def schedule_file(tmp_path, monkeypatch):
    """A copy of include/config/schedule.yaml (MLOPS_CONFIG_DIR) whose start_date the test sets."""
    import shutil

    for f in (ROOT / "include" / "config").glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("MLOPS_START_DATE", raising=False)
    monkeypatch.delenv("MLOPS_END_DATE", raising=False)

    def start(value: str) -> None:
        path = tmp_path / "schedule.yaml"
        lines = path.read_text().splitlines()
        path.write_text("\n".join(f"start_date: {value}" if ln.startswith("start_date:") else ln for ln in lines))

    return start


@pytest.mark.parametrize(
    "file_start, env, error",
    [
        ("null", {}, "start_date = None: must be a date YYYY-MM-DD"),  # no "today" any more
        ("", {}, "start_date = None: must be a date YYYY-MM-DD"),
        ("2013-01-01", {"MLOPS_START_DATE": "2013-13-01"}, "start_date = '2013-13-01': must be a date YYYY-MM-DD"),
        ("2013-01-01", {"MLOPS_START_DATE": "20130105"}, "start_date = '20130105': must be a date YYYY-MM-DD"),
        ("2013-01-01", {"MLOPS_END_DATE": "2012-12-31"}, "end_date = '2012-12-31': before start_date 2013-01-01"),
    ],
    ids=["null", "empty", "invalid-env", "not-YYYY-MM-DD", "end-before-start"],
)
def test_an_unset_or_invalid_window_is_a_parse_error_naming_the_setting(
    schedule_file, monkeypatch, file_start, env, error
):
    """What the DAG files call while they are parsed (ingest_flights, simulate_upstream, the others' start date)."""
    from mlops_airflow.blocks.defaults import schedule_window

    schedule_file(file_start)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match="MLOPS_START_DATE") as exc:
        schedule_window()
    assert error in str(exc.value) and "schedule.yaml" in str(exc.value)


def test_the_window_start_is_fixed_and_an_override_moves_it(schedule_file, monkeypatch):
    from mlops_airflow.blocks.defaults import schedule_window

    schedule_file("2013-01-01")
    assert schedule_window()["start_date"].isoformat() == "2013-01-01T00:00:00+00:00"
    monkeypatch.setenv("MLOPS_START_DATE", "2013-03-04")
    monkeypatch.setenv("MLOPS_END_DATE", "2013-03-31")
    w = schedule_window()
    assert (w["start_date"].date().isoformat(), w["end_date"].date().isoformat()) == ("2013-03-04", "2013-03-31")
