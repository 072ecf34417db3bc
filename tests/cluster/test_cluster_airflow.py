"""Airflow across the test hosts (``scripts/cluster/cluster.py up``): the scheduler, dag-processor, triggerer and
api-server on ``control`` with the CeleryExecutor and no local worker, a Celery worker on ``worker1`` and one on
``worker2``, the lake on the cluster's S3 API, the registry its MLflow server. A day ingested through the REST API:
every task runs on a worker host (its hostname the host's address), the curated day lands in the object store, the
task log is read back from the worker's log server, and no host's disk holds a lake."""

from __future__ import annotations

import json
import secrets
import time
from urllib.parse import quote

import pytest
from cluster_hosts import cluster, needs_root

DAY = "2013-01-17"
TERMINAL = {"success", "failed"}

pytestmark = [needs_root, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    c = cluster.Cluster(
        tmp_path_factory.mktemp("cluster"), "a" + secrets.token_hex(3), f"10.78.{secrets.randbelow(200) + 20}"
    )
    try:
        c.up(airflow=True)
        yield c
    finally:
        c.down()


def _lake(env):
    import s3fs

    from include.mlops.core.lake import Lake

    fs = s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": env["MLOPS_CLUSTER_S3"], "region_name": env["AWS_DEFAULT_REGION"]},
    )
    return Lake(env["MLOPS_LAKE_URL"], fs=fs)


def _wait(what, check, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(2)
    return found


def test_a_day_ingested_through_the_rest_api_runs_on_the_worker_hosts(hosts):
    from include.mlops.simulate.upstream import Upstream

    env = hosts.env()
    assert hosts.celery_workers() == {"worker1", "worker2"}
    _wait("ingest_flights parsed", lambda: hosts.api("GET", "/api/v2/dags/ingest_flights").is_success, 240)
    assert hosts.api("PATCH", "/api/v2/dags/ingest_flights", json={"is_paused": False}).status_code == 200
    lake = _lake(env)
    Upstream(lake).publish_day(DAY)
    r = hosts.api("POST", "/api/v2/dags/ingest_flights/dagRuns", json={"logical_date": f"{DAY}T00:00:00Z"})
    assert r.status_code == 200, r.text
    run_id = r.json()["dag_run_id"]

    def finished():
        state = hosts.api("GET", f"/api/v2/dags/ingest_flights/dagRuns/{quote(run_id, safe='')}").json()["state"]
        return state if state in TERMINAL else None

    state = _wait("the ingestion run", finished, 600)
    path = f"/api/v2/dags/ingest_flights/dagRuns/{quote(run_id, safe='')}/taskInstances"
    tis = hosts.api("GET", path).json()["task_instances"]
    ran = {t["task_id"]: t for t in tis if t["state"] == "success"}
    assert state == "success", {t["task_id"]: t["state"] for t in tis}
    assert {"flights.extract", "flights.validate", "flights.curate", "weather.curate"} <= set(ran), sorted(ran)
    workers = {hosts.addr(h) for h in cluster.WORKERS}
    where = {t["task_id"]: t["hostname"] for t in ran.values()}
    assert set(where.values()) <= workers, where  # every task on a worker host, none on control
    # the task log, as the UI reads it: fetched by the api-server from the worker's log server over the network
    ti = ran["flights.validate"]
    log = hosts.api(
        "GET",
        f"/api/v2/dags/ingest_flights/dagRuns/{quote(run_id, safe='')}/taskInstances/flights.validate/logs/"
        f"{ti['try_number']}",
        params={"full_content": "true"},
    )
    assert log.status_code == 200, log.text[-2000:]
    text = json.dumps(log.json()["content"])
    assert "passed" in text and f"{where['flights.validate']}:8793" in text, text[-3000:]
    # the curated day is in the object store; no host wrote a lake of its own
    assert lake.exists(f"curated/flights/date={DAY}", "part-00000.parquet")
    for host in ("control", *cluster.WORKERS):
        assert not (hosts.home / "hosts" / host / "lake").exists(), host
