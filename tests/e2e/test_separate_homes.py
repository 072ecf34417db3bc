"""The lifecycle with nothing shared between tasks but what production shares: the lake on S3 (the moto server),
the registry on a real MLflow tracking server (``mlflow server``, artifacts served by it) and Airflow's metadata
database. Every task runs as it would on its own Celery worker: with its own, fresh and empty ``MLOPS_HOME``,
working directory and temporary folder, all deleted once it ends, so that nothing one task leaves on local disk
can be seen by a later one.

The hook (``separate_homes``) wraps the two places where ``dag.test()`` (Airflow 3.3) runs user code:
``run_task_in_process`` (each execution of a task: ``@task`` functions, operators, a sensor's first execution and
its resumption after the trigger fired) and ``InProcessTestSupervisor.run_trigger_in_process`` (a deferred
sensor's trigger, which production runs on the triggerer). Each call gets ``<tmp>/homes/<dag>.<task>.<try>.<n>``
with ``home/`` (MLOPS_HOME), ``cwd/`` (the working directory) and ``tmp/`` (TMPDIR and ``tempfile.tempdir``).

One day is ingested through ``ingest_flights`` (the days before it are curated in the S3 lake directly, for
speed), ``train_model`` trains on six days with Horovod (its ranks read the training set from S3), registers the
version on the tracking server and gates it, and ``deploy_model`` promotes it, the first model, directly.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "mlops-homes"
PREFIX = "lake"
CURATED_BEFORE = ["2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04", "2013-01-05"]
DAY = "2013-01-06"  # ingested through the DAG; the last day of the training window
TRAIN = {
    "end_date": DAY,
    "window_days": 6,
    "min_days": 6,
    "workers": 1,
    "num_boost_round": 20,
    "gate_min_auc": 0.5,
    "gate_max_ece": 0.3,
    "reason": "separate homes",
}
# what the project root may gain while tests run, whoever writes it (bytecode, the tests' own records)
NOISE = {"__pycache__", ".git", ".venv", ".pytest_cache", ".ruff_cache", ".mypy_cache", "test-output", "mutants"}

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    """``mlflow server`` on a free port: SQLite backend, artifacts served by the server from a folder of its own.
    It starts in the background (its first start migrates its database: seconds); ``ready()`` waits for it."""

    def __init__(self, root: Path):
        self.root = root
        self.url = f"http://127.0.0.1:{_free_port()}"
        self._log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--serve-artifacts",
                "--artifacts-destination",
                str(root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                self.url.rsplit(":", 1)[1],
                "--workers",
                "1",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
        )

    def ready(self, timeout_s: float = 90) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            assert self.proc.poll() is None, "mlflow server exited: " + log
            assert time.monotonic() < deadline, "mlflow server did not start: " + log
            time.sleep(0.3)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def tracking_server(tmp_path):
    root = tmp_path / "mlflow-server"
    root.mkdir()
    server = TrackingServer(root)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_lake(moto_server, monkeypatch):
    """The lake at ``s3://mlops-homes/lake`` on the moto server, as the tasks (``aws_default``) and the test see it."""
    import boto3

    from include.mlops.core.lake import Lake

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("MLOPS_LAKE_URL", f"s3://{BUCKET}/{PREFIX}")
    # the registered versions' snapshots on the same object store, reached with the lake's connection
    monkeypatch.setenv("DVC_REMOTE_URL", f"s3://{BUCKET}/dvc")
    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_server, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    lake = Lake(
        f"s3://{BUCKET}/{PREFIX}",
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": moto_server, "region_name": "us-east-1"},
    )
    yield lake, s3
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page["Contents"]]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
    s3.delete_bucket(Bucket=BUCKET)


class SeparateHomes:
    """Runs each task execution and each trigger in a fresh MLOPS_HOME, working directory and temporary folder,
    restores the process's own afterwards and deletes them; records who ran where and what each one left."""

    def __init__(self, root: Path):
        self.root = root
        self.records: list[dict] = []
        self._n = itertools.count()
        self.before_trigger = None  # called with the task id before a trigger runs (what the world does meanwhile)

    def around(self, kind: str, dag_id: str, task_id: str, try_number: int, call):
        where = self.root / f"{dag_id}.{task_id}.{try_number}.{next(self._n)}"
        dirs = {name: where / name for name in ("home", "cwd", "tmp")}
        for d in dirs.values():
            d.mkdir(parents=True)
        saved_env = {k: os.environ.get(k) for k in ("MLOPS_HOME", "TMPDIR")}
        saved_cwd, saved_tempdir = os.getcwd(), tempfile.tempdir
        os.environ["MLOPS_HOME"], os.environ["TMPDIR"] = str(dirs["home"]), str(dirs["tmp"])
        tempfile.tempdir = str(dirs["tmp"])
        os.chdir(dirs["cwd"])
        record = {"kind": kind, "dag_id": dag_id, "task_id": task_id, "try": try_number, "where": str(where)}
        try:
            record["home_seen"] = os.environ["MLOPS_HOME"]
            return call()
        finally:
            os.chdir(saved_cwd)
            tempfile.tempdir = saved_tempdir
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            record["left"] = {
                name: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) for name, d in dirs.items()
            }
            shutil.rmtree(where)
            record["deleted"] = not where.exists()
            self.records.append(record)

    def ran(self, dag_id: str, kind: str = "task") -> set[str]:
        return {r["task_id"] for r in self.records if r["dag_id"] == dag_id and r["kind"] == kind}


@pytest.fixture
def separate_homes(tmp_path, monkeypatch):
    from airflow.sdk.execution_time import supervisor

    homes = SeparateHomes(tmp_path / "homes")
    run_task, run_trigger = supervisor.run_task_in_process, supervisor.InProcessTestSupervisor.run_trigger_in_process

    def task_in_own_home(ti, task, *args, **kwargs):
        return homes.around("task", ti.dag_id, ti.task_id, ti.try_number, lambda: run_task(ti, task, *args, **kwargs))

    def trigger_in_own_home(*, trigger, ti):
        if homes.before_trigger is not None:
            homes.before_trigger(ti.task_id)
        return homes.around(
            "trigger", ti.dag_id, ti.task_id, ti.try_number, lambda: run_trigger(trigger=trigger, ti=ti)
        )

    # dag.test() imports both from the module when it runs a task: patched there, every run goes through them
    monkeypatch.setattr(supervisor, "run_task_in_process", task_in_own_home)
    monkeypatch.setattr(supervisor.InProcessTestSupervisor, "run_trigger_in_process", staticmethod(trigger_in_own_home))
    return homes


def _listing(root: Path, skip: set[Path] = frozenset()) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in NOISE and Path(dirpath, d) not in skip]
        out |= {os.path.relpath(os.path.join(dirpath, f), root) for f in filenames}
    return out


def _mlflow(url: str, path: str, **params) -> dict:
    r = httpx.get(f"{url}/api/2.0/mlflow/{path}", params=params, timeout=30)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r.json()


def test_the_lifecycle_with_a_home_per_task(run_dag, s3_lake, tracking_server, separate_homes, monkeypatch):
    from curation import write_curated

    from include.mlops.core import layout
    from include.mlops.simulate.upstream import Upstream

    lake, s3 = s3_lake
    url, server_root = tracking_server.url, tracking_server.root
    model = f"homes_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLOPS_MODEL_NAME", model)
    own_home = Path(os.environ["MLOPS_HOME"])
    airflow_home = Path(os.environ["AIRFLOW_HOME"])  # Airflow's own: its database and task logs
    write_curated(lake, CURATED_BEFORE)
    before = {"root": _listing(ROOT, {own_home, airflow_home}), "home": _listing(own_home, {airflow_home})}
    t0 = time.monotonic()
    timings = {}

    # the day's files are there, its _SUCCESS markers not yet: each sensor looks and defers; the marker comes
    # while its trigger waits (in the trigger's own home), then the sensor resumes (in a third one)
    for dataset in ("weather", "flights"):
        Upstream(lake).publish(DAY, dataset)
        lake.rm(layout.landing(dataset, DAY), layout.SUCCESS)
    separate_homes.before_trigger = lambda task_id: lake.touch(
        layout.landing(task_id.split(".")[0], DAY), layout.SUCCESS
    )
    ingest = run_dag("ingest_flights", DAY)
    assert ingest.state == "success", ingest
    timings["ingest_s"] = round(time.monotonic() - t0, 1)
    tracking_server.ready()  # started with the test; ingestion does not use the registry
    train = run_dag("train_model", DAY, conf=TRAIN)
    assert train.state == "success", train
    timings["train_s"] = round(time.monotonic() - t0 - timings["ingest_s"], 1)
    run_key = train.run_id.replace(":", "").replace("+", "")
    decision = lake.read_json("reports", "gate", run_key, "decision.json")
    assert decision["passed"] and decision["champion_version"] is None, decision
    version = str(decision["version"])
    # the version's training set kept on the object store (its DVC listing there), not on the task's disk
    from include.mlops.core import registry

    snapshot = registry.load_artifact(version, "rebuild.json")["snapshot"]
    s3.head_object(Bucket=BUCKET, Key=f"dvc/versions/files/md5/{snapshot[4:6]}/{snapshot[6:]}")
    deploy = run_dag("deploy_model", "2013-01-07", conf={"version": version})
    assert deploy.state == "success", deploy
    took = time.monotonic() - t0
    timings["deploy_s"] = round(took - timings["ingest_s"] - timings["train_s"], 1)

    # every task that ran, ran in a home of its own (a sensor's trigger too), and each home is gone
    for run, dag_id in ((ingest, "ingest_flights"), (train, "train_model"), (deploy, "deploy_model")):
        executed = {t for t, (state, _) in run.tasks.items() if state in ("success", "failed")}
        assert executed and separate_homes.ran(dag_id) == executed, (dag_id, executed, separate_homes.ran(dag_id))
    assert separate_homes.ran("ingest_flights", "trigger") == {"flights.wait_for_drop", "weather.wait_for_drop"}
    for sensor in ("flights.wait_for_drop", "weather.wait_for_drop"):  # look, wait, resume: three homes
        assert [r["kind"] for r in separate_homes.records if r["task_id"] == sensor] == ["task", "trigger", "task"]
    assert {"flights.wait_for_drop", "check_window", "build_training_set", "train", "register"} <= {
        r["task_id"] for r in separate_homes.records
    }
    assert len({r["where"] for r in separate_homes.records}) == len(separate_homes.records)
    assert all(r["home_seen"] == str(Path(r["where"]) / "home") for r in separate_homes.records)
    assert all(r["deleted"] for r in separate_homes.records) and not any(separate_homes.root.iterdir())
    # with the lake on S3 and the registry on a tracking server, a task keeps nothing locally: not in its
    # MLOPS_HOME, its working directory or its temporary folder (its worker's disk stays as it was)
    left = {f"{r['dag_id']}.{r['task_id']}.{r['kind']}": r["left"] for r in separate_homes.records}
    assert {k: v for k, v in left.items() if any(v.values())} == {}

    # the registry: the version, its artifacts and the champion alias on the tracking server, over REST
    versions = _mlflow(url, "model-versions/search", filter=f"name='{model}'")["model_versions"]
    assert [v["version"] for v in versions] == [version], versions
    alias = _mlflow(url, "registered-models/alias", name=model, alias="champion")["model_version"]
    assert alias["version"] == version
    assert any(p.name == "model.txt" or p.suffix == ".txt" for p in (server_root / "artifacts").rglob("*")), sorted(
        str(p) for p in (server_root / "artifacts").rglob("*")
    )

    # the lake: the day curated, the training set and the gate's report, the rollout, all in the bucket
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page["Contents"]}
    for expected in (
        f"{PREFIX}/curated/flights/date={DAY}/part-00000.parquet",
        f"{PREFIX}/curated/weather/date={DAY}/part-00000.parquet",
        f"{PREFIX}/{layout.training(run_key)}/{layout.TRAINING_REGISTERED}",
        f"{PREFIX}/reports/gate/{run_key}/decision.json",
        f"{PREFIX}/reports/gate/{run_key}/report.html",
        f"{PREFIX}/deployments/rollout.json",
    ):
        assert expected in keys, (expected, sorted(keys)[:50])
    assert lake.read_json("deployments", "rollout.json")["status"] == "promoted"

    # nothing was written on the local disk the tasks would share on one machine: the project, the test's home
    after = {"root": _listing(ROOT, {own_home, airflow_home}), "home": _listing(own_home, {airflow_home})}
    assert after["root"] - before["root"] == set() and after["home"] - before["home"] == set(), {
        k: sorted(after[k] - before[k]) for k in after
    }

    record = {"lifecycle_s": round(took, 1), **timings, "executions": len(separate_homes.records)}
    (ROOT / "test-output" / "separate_homes.json").write_text(json.dumps(record, indent=2))
