"""The lifecycle across the test hosts (``scripts/cluster/cluster.py up``): the scheduler, dag-processor, triggerer
and api-server on ``control`` with the CeleryExecutor and no local worker, a Celery worker and an SSH server on
``worker1`` and on ``worker2``, the lake on the cluster's S3 API, the registry its MLflow server, the prediction
service on ``serve``. One cluster for the module (it costs about a minute to start):

- every host reaches the cluster's servers over the network (Redis, the PostgreSQL relay, the S3 API, the MLflow
  server), a worker host the others over SSH, and resolves this machine's hostname to its own address; the object
  store honours a conditional put; after the module ``down`` leaves no namespace, bridge, hosts file, database or
  process;

- days ingested through the REST API run every task on a worker host, the task log is read back from the worker's log
  server; one Celery worker is killed (SIGKILL, with its task) while it validates a day: the scheduler finds the
  task's heartbeat gone (after ``task_instance_heartbeat_timeout``, lowered here from its 300 s), the retry runs on
  the other worker and every run succeeds; the Asset starts ``train_model``, whose Horovod job runs one rank on each
  worker host (started over SSH: a host's Celery worker is not needed for its rank), the gate passes,
  ``deploy_model`` promotes the version and the service on ``serve`` answers with it; no host's disk holds a lake or
  a registry.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from cluster_hosts import (
    NOTHING,
    SMALL_SCALE,
    TERMINAL,
    cluster,
    finished,
    ingest,
    lake_of,
    left_behind,
    needs_root,
    new_cluster,
    runs,
    task_instances,
    task_log,
    unpause,
    wait,
)

DAYS = ["2013-01-17", "2013-01-18", "2013-01-19", "2013-01-20"]  # the deployment test's: a model the gate passes
# a lost task found within about 30 s (the heartbeat timeout, checked every 5 s)
SETTINGS = SMALL_SCALE | {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}

pytestmark = [needs_root, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    c = new_cluster(tmp_path_factory.mktemp("cluster"), "a", 78)
    try:
        c.up(airflow=True, settings=SETTINGS)
        yield c
    finally:
        removed = c.down()
    assert {f"bridge {c.bridge}", f"namespace {c.ns('serve')}", f"database {c.prefix}_mlflow"} <= set(removed)
    assert left_behind(c) == NOTHING  # no namespace, bridge, hosts file, database or process
    assert not c.state_file.exists() and not c.env_file.exists() and not (c.home / "ssh").exists()
    assert c.down() == []  # again: nothing to remove, no error


def test_each_host_reaches_the_servers_over_the_network(hosts):
    env = hosts.env()
    assert (hosts.env_file.stat().st_mode & 0o777) == 0o600 and env["MLOPS_LAKE_URL"] == "s3://lake"
    servers = {"redis": True, "postgres": True, "s3": True, "mlflow": True}
    for host in cluster.HOSTS:
        found = hosts.probe(host)
        assert found["ok"], (host, found)
        ssh = {f"ssh {h}": True for h in cluster.WORKERS} if host in cluster.WORKERS else {}
        assert found["answered"] == servers | ssh, host  # a worker host reaches the others over SSH (Horovod)
        assert found["hostname_address"] == hosts.addr(host)  # what Horovod's Gloo resolves: the host itself
    # the hosts are apart: worker1's address is not this machine's, and only the bridge joins them
    r = subprocess.run(
        ["ip", "netns", "exec", hosts.ns("worker1"), "getent", "hosts", "worker2", "control", socket.gethostname()],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.split() == [hosts.addr("worker2"), "worker2", hosts.addr("control"), "control"] + [
        hosts.addr("worker1"),
        socket.gethostname(),
        "worker1",
    ], r.stdout
    # the SSH servers: the cluster's key only, from the cluster's network only; the machine's SSH set-up untouched
    assert (
        not Path("/root/.ssh/known_hosts").exists()
        or hosts.addr("worker1") not in Path("/root/.ssh/known_hosts").read_text()
    )
    # the object store honours a conditional put (If-None-Match: *), as the audit trail's exclusive create needs
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=env["MLOPS_CLUSTER_S3"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    s3.put_object(Bucket="lake", Key="once.json", Body=b"1", IfNoneMatch="*")
    with pytest.raises(s3.exceptions.ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket="lake", Key="once.json", Body=b"2", IfNoneMatch="*")
    assert s3.get_object(Bucket="lake", Key="once.json")["Body"].read() == b"1"
    s3.delete_object(Bucket="lake", Key="once.json")
    with pytest.raises(cluster.ClusterError, match="a cluster is up already"):
        hosts.up()
    servers = ["postgres-relay", "redis", "seaweedfs", "mlflow", "sshd-worker1", "sshd-worker2"]
    assert hosts.status()["processes"] == dict.fromkeys(
        [*servers, "celery-worker1", "celery-worker2", "serve"], "running"
    )


def _kill_worker(hosts, host: str) -> None:
    """SIGKILL to a host's Celery worker and every process under it (the task it runs), as a crash would."""
    import psutil

    worker = psutil.Process(hosts.load()["processes"][f"celery-{host}"]["pid"])
    family = [worker, *worker.children(recursive=True)]
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def test_the_lifecycle_across_the_hosts(hosts):
    from include.mlops.core import layout

    env = hosts.env()
    workers = {hosts.addr(h) for h in cluster.WORKERS}
    assert hosts.celery_workers() == set(cluster.WORKERS)
    unpause(hosts, "ingest_flights", "train_model", "deploy_model")
    lake = lake_of(env)
    t0 = time.monotonic()

    # four days through the REST API: every task on a worker host, none on control; the worker validating one of
    # them is killed with its task
    ids = ingest(hosts, lake, DAYS)

    def validating():
        for run_id in ids:
            ti = task_instances(hosts, "ingest_flights", run_id).get("flights.validate") or {}
            if ti.get("state") == "running" and ti.get("hostname"):
                return run_id, ti
        return None

    killed_run, ti = wait("flights.validate running", validating, 300, every_s=0.5)
    victim = next(h for h in cluster.WORKERS if hosts.addr(h) == ti["hostname"])
    survivor = next(h for h in cluster.WORKERS if h != victim)
    _kill_worker(hosts, victim)
    assert hosts.celery_workers() == {survivor}

    states = wait("the ingestion runs", lambda: finished(hosts, "ingest_flights", ids), 600)
    tis = task_instances(hosts, "ingest_flights", killed_run)
    assert set(states.values()) == {"success"}, (states, {k: (t["state"], t["try_number"]) for k, t in tis.items()})
    ingest_s = time.monotonic() - t0
    validate = tis["flights.validate"]  # retried on the other worker
    assert validate["try_number"] >= 2 and validate["hostname"] == hosts.addr(survivor), validate
    assert all(lake.exists(f"curated/flights/date={day}", "part-00000.parquet") for day in DAYS)
    ran = {t["task_id"]: t for t in tis.values() if t["state"] == "success"}
    assert {"flights.extract", "flights.validate", "flights.curate", "weather.curate"} <= set(ran), sorted(ran)
    where = {t["task_id"]: t["hostname"] for t in ran.values()}
    assert set(where.values()) <= workers, where
    # the task log, as the UI reads it: fetched by the api-server from the worker's log server over the network
    text = task_log(hosts, "ingest_flights", killed_run, validate)
    assert "passed" in text and f"{hosts.addr(survivor)}:8793" in text, text[-3000:]

    # the Asset starts train_model; the run that saw the four days trains with one rank on each worker host
    def trained():
        for run in runs(hosts, "train_model"):
            if run["state"] not in TERMINAL:
                return None
            if task_instances(hosts, "train_model", run["dag_run_id"])["train"]["state"] != "skipped":
                return run
        return None

    run = wait("the training run", trained, 600)
    tis = task_instances(hosts, "train_model", run["dag_run_id"])
    assert run["state"] == "success" and run["run_type"] == "asset_triggered", (
        run,
        {k: v["state"] for k, v in tis.items()},
    )
    assert not (run.get("conf") or {}).get("hosts") and tis["train"]["hostname"] == hosts.addr(survivor)  # defaults
    text = task_log(hosts, "train_model", run["dag_run_id"], tis["train"])
    assert "Horovod job finished" in text and "'rank_hosts': ['worker1', 'worker2']" in text, text[-3000:]
    assert "'hosts': 'worker1:1,worker2:1'" in text, text[-3000:]
    run_key = run["dag_run_id"].replace(":", "").replace("+", "")
    job = lake.read_json(layout.training(run_key), layout.TRAINING_JOB)
    assert job["rank_hosts"] == ["worker1", "worker2"] and len(job["machines"]) == 2, job
    assert {m.split(":")[0] for m in job["machines"]} == workers, job  # LightGBM's peers: the hosts' addresses
    decision = lake.read_json(layout.gate(run_key), layout.GATE_DECISION)
    version = str(decision["version"])
    assert decision["passed"], decision

    def deployed():
        found = [r for r in runs(hosts, "deploy_model") if str((r.get("conf") or {}).get("version")) == version]
        return found[0] if found and found[0]["state"] in TERMINAL else None

    deploy = wait("the deploy_model run", deployed, 300)
    assert deploy["state"] == "success", deploy
    assert lake.read_json(*layout.rollout())["status"] == "promoted"

    # the service on serve reads the registry and the lake over the network and answers with the new champion
    from include.mlops.simulate.traffic import requests_for

    wait(
        "the service on serve to serve the champion",
        lambda: httpx.get(hosts.serve_url + "/health", timeout=30).json().get("champion") == version,
        120,
        every_s=1,
    )
    token = (hosts.home / "serve_token").read_text().strip()
    r = httpx.post(
        hosts.serve_url + "/predict/batch",
        json={"flights": requests_for(DAYS[-1])[:3]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert {p["version"] for p in r.json()["predictions"]} == {version}
    print(f"cluster lifecycle: 4 days ingested in {ingest_s:.0f} s, served v{version} at {time.monotonic() - t0:.0f} s")

    # the registry is the MLflow server and the lake the object store: no host keeps either on its disk
    for host in cluster.HOSTS:
        home = hosts.home / "hosts" / host
        assert not (home / "lake").exists() and not (home / "mlflow").exists(), sorted(p.name for p in home.iterdir())
