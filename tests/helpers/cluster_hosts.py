"""The test hosts' script (``scripts/cluster/cluster.py``) as a module for the tests in ``tests/cluster/``, the mark
they share (network namespaces need root and iproute2), and their ways to the cluster: its lake, Airflow's REST API
on ``control`` (runs, task instances, task logs), the upstream's drops."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("cluster_script", ROOT / "scripts" / "cluster" / "cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cluster = _load()
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="network namespaces need root and iproute2"
)

TERMINAL = {"success", "failed"}


def lake_of(env):
    """The cluster's lake (its S3 API, from this machine)."""
    import s3fs

    from include.mlops.core.lake import Lake

    fs = s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": env["MLOPS_CLUSTER_S3"], "region_name": env["AWS_DEFAULT_REGION"]},
    )
    return Lake(env["MLOPS_LAKE_URL"], fs=fs)


def wait(what, check, timeout_s, every_s=2.0):
    """Poll ``check()`` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(every_s)
    return found


def get(hosts, path, **params):
    r = hosts.api("GET", path, params=params)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
    return r.json()


def runs(hosts, dag_id):
    return get(hosts, f"/api/v2/dags/{dag_id}/dagRuns", limit=100, order_by="run_after")["dag_runs"]


def task_instances(hosts, dag_id, run_id):
    tis = get(hosts, f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances", limit=100)
    return {t["task_id"]: t for t in tis["task_instances"]}


def task_log(hosts, dag_id, run_id, ti) -> str:
    """A task try's log as the UI reads it (the api-server fetches it from the worker's log server), as JSON."""
    r = hosts.api(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{ti['task_id']}/logs/{ti['try_number']}",
        params={"full_content": "true"},
    )
    assert r.status_code == 200, r.text[-2000:]
    return json.dumps(r.json()["content"])


def finished(hosts, dag_id, run_ids):
    """The runs' states once every one of them has finished, else None."""
    states = {r["dag_run_id"]: r["state"] for r in runs(hosts, dag_id) if r["dag_run_id"] in run_ids}
    return states if len(states) == len(run_ids) and set(states.values()) <= TERMINAL else None


def ingest(hosts, lake, days) -> list[str]:
    """Each day dropped by the upstream stand-in, then an ingest_flights run for it through the REST API."""
    from include.mlops.simulate.upstream import Upstream

    up = Upstream(lake)
    for day in days:
        up.publish_day(day)
    ids = []
    for day in days:
        r = hosts.api("POST", "/api/v2/dags/ingest_flights/dagRuns", json={"logical_date": f"{day}T00:00:00Z"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["dag_run_id"])
    return ids


def unpause(hosts, *dag_ids) -> None:
    for dag_id in dag_ids:
        wait(f"{dag_id} parsed", lambda d=dag_id: hosts.api("GET", f"/api/v2/dags/{d}").is_success, 240)
        assert hosts.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200


NOTHING = {"namespaces": [], "bridge": [], "hosts files": [], "databases": [], "processes": []}


def left_behind(c) -> dict[str, list[str]]:
    """What of the cluster ``c`` is still on the machine (``NOTHING`` after its ``down``)."""
    import psutil

    namespaces = [ns for ns in cluster._namespaces() if ns.startswith(c.prefix + "-")]
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SELECT datname FROM pg_database"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    procs = [
        p.info["pid"]
        for p in psutil.process_iter(["pid", "cmdline"])
        if any(str(c.home) in a or c.gateway in a or c.addr("control") in a for a in (p.info["cmdline"] or []))
    ]
    return {
        "namespaces": namespaces,
        "bridge": [c.bridge] if cluster._link_exists(c.bridge) else [],
        "hosts files": [str(p) for p in Path("/etc/netns").glob(c.prefix + "-*")],
        "databases": [d for d in out if d.startswith(c.prefix + "_")],
        "processes": procs,
    }


# the lifecycle on a small scale, on every Airflow host and the service (Cluster.up's settings): the replayed year's
# window (no scheduled run for today's date waiting for its drop), a first model from four curated days, quick pokes
# and retries
SMALL_SCALE = {
    "MLOPS_START_DATE": "2013-01-01",
    "MLOPS_END_DATE": "2013-12-31",
    "MLOPS_SENSOR_TIMEOUT_S": "120",
    "MLOPS_TRAIN_MIN_DAYS": "4",
    "MLOPS_SENSOR_POKE_S": "1",
    "MLOPS_RETRY_DELAY_S": "1",
    "MLOPS_DEPLOY_POKE_S": "1",
    "MLOPS_SERVE_REFRESH_S": "2",
}


def new_cluster(home: Path, letter: str, second_octet: int):
    """A cluster object with a prefix (``letter`` and six hex digits) and a /24 (``10.<second_octet>.x``) of its own,
    so that clusters of different tests or runs never share a name or an address."""
    import secrets

    return cluster.Cluster(home, letter + secrets.token_hex(3), f"10.{second_octet}.{secrets.randbelow(200) + 20}")
