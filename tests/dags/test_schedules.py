"""The DAGs' schedules come from configuration (include/config/schedule.yaml and MLOPS_START_DATE / MLOPS_END_DATE
/ MLOPS_CATCHUP / MLOPS_REPLAY), never from the reference data's year; the replay puts simulate_upstream on the
daily schedule of the window. Each case parses the DAG files in a fresh interpreter with its environment."""

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
bag = DagBag(dag_folder="dags")
assert not bag.import_errors, bag.import_errors
out = {}
for dag_id in ("simulate_upstream", "ingest_flights"):
    d = bag.dags[dag_id]
    out[dag_id] = {
        "schedule": d.schedule if isinstance(d.schedule, str) else None,
        "start": d.start_date.date().isoformat(),
        "end": d.end_date.date().isoformat() if d.end_date else None,
        "catchup": d.catchup,
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
        # a live source: from today on, no catch-up, the simulator by hand only
        ({}, {"schedule": None, "catchup": False, "end": None}, {"schedule": "@daily", "catchup": False}),
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
    ids=["live", "replay"],
)
def test_schedules_come_from_configuration(env, sim, ingest):
    out = _parse(**env)
    for dag_id, want in (("simulate_upstream", sim), ("ingest_flights", ingest)):
        got = out[dag_id]
        want = dict(want)
        assert {k: got[k] for k in want} == want, (dag_id, got)
    if not env:
        import datetime as dt

        assert out["ingest_flights"]["start"] == dt.datetime.now(dt.UTC).date().isoformat()
    assert out["tasks"] == ["plan", "wait_for_turn", "publish_day"]
