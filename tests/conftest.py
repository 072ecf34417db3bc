"""Test environment: a throw-away MLOPS_HOME / AIRFLOW_HOME, set before anything imports Airflow."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="mlops-test-"))

for var in list(os.environ):  # MLOPS_TEST_* configure the tests themselves (e.g. MLOPS_TEST_PG): kept
    if var.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "MLOPS_", "DVC_REMOTE_")) and not var.startswith("MLOPS_TEST_"):
        del os.environ[var]
os.environ.update(
    {
        "MLOPS_HOME": str(_HOME),
        "AIRFLOW_HOME": str(_HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MLOPS_SENSOR_POKE_S": "1",
        "MLOPS_RETRY_DELAY_S": "1",
        "MLOPS_SENSOR_TIMEOUT_S": "60",
        "MLOPS_DEPLOY_POKE_S": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "MLOPS_START_DATE": "2013-01-01",  # the tests replay 2013 (include/config/schedule.yaml)
        "DVC_REMOTE_URL": str(_HOME / "dvc-remote"),  # the registered versions' snapshots, not the project's
    }
)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
for p in (str(ROOT / "tests" / "helpers"), str(ROOT / "plugins"), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

# real Airflow runs, lakes, S3 (moto) and Slack stand-ins for e2e/ and faults/ (one instance per session)
pytest_plugins = ["airflow_fixtures"]

OUTPUT = ROOT / "test-output"
OUTPUT.mkdir(exist_ok=True)
