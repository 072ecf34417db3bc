"""The same lifecycle on one host and across the test hosts, timed in one run: what the cluster path costs.

Both start from nothing and run the same steps through Airflow's REST API with the same settings: four days dropped
upstream and ingested (``ingest_flights``, one run per day, triggered together), the Asset starting ``train_model``
(two Horovod ranks; LightGBM's data-parallel learner), the gate, ``deploy_model`` promoting the first version, the
prediction service answering with it.

- **one host**: the production-shaped deployment of ``make up-prod`` (``scripts/prod/airflow_prod.py``: scheduler,
  dag-processor, triggerer, api-server, the prediction service; the LocalExecutor, parallelism 4), the lake on local
  disk, the registry MLflow's embedded store, both ranks on this host;
- **cluster**: the test hosts of ``make cluster-up`` (``scripts/cluster/cluster.py``): the same components on
  ``control`` with the CeleryExecutor, a Celery worker of concurrency 2 on each of two worker hosts, the lake on
  SeaweedFS's S3 API, the registry the MLflow tracking server, one rank on each worker host (started over SSH), the
  service on ``serve``.

The test hosts are network namespaces of this machine and share its cores: the difference is the cluster path's
overhead (a broker between scheduler and workers, object store and tracking server over the network, SSH start of
the remote rank), not a speed-up.

    .venv/bin/python bench/bench_cluster.py [--where one-host cluster] [--out bench/results/cluster]

Needs root (network namespaces), PostgreSQL (``MLOPS_TEST_PG``, default postgresql://postgres@127.0.0.1:5432) and
about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests" / "helpers", ROOT / "tests" / "deploy", ROOT / "plugins"):
    sys.path.insert(0, str(p))

from cluster_hosts import SMALL_SCALE  # noqa: E402 - the same small-scale settings as the cluster tests

DAYS = ["2013-01-17", "2013-01-18", "2013-01-19", "2013-01-20"]
TERMINAL = {"success", "failed"}


def _seconds(ti: dict) -> float | None:
    if not (ti.get("start_date") and ti.get("end_date")):
        return None
    end, start = dt.datetime.fromisoformat(ti["end_date"]), dt.datetime.fromisoformat(ti["start_date"])
    return round((end - start).total_seconds(), 1)


def lifecycle(target, lake, serve_url: str, token: str) -> dict:
    """The steps, each timed from the previous one's end; ``target`` answers ``api(method, path, **kw)``."""
    from cluster_hosts import finished, ingest, runs, task_instances, unpause, wait

    from include.mlops.core import layout

    t: dict[str, float] = {}
    t0 = time.monotonic()
    unpause(target, "ingest_flights", "train_model", "deploy_model")
    t["dags_parsed_s"] = time.monotonic() - t0
    ids = ingest(target, lake, DAYS)
    states = wait("the ingestion runs", lambda: finished(target, "ingest_flights", ids), 900, every_s=1)
    assert set(states.values()) == {"success"}, states
    t["ingest_4_days_s"] = time.monotonic() - t0 - sum(t.values())

    def trained():
        for run in runs(target, "train_model"):
            if run["state"] not in TERMINAL:
                return None
            if task_instances(target, "train_model", run["dag_run_id"])["train"]["state"] != "skipped":
                return run
        return None

    run = wait("the training run", trained, 900, every_s=1)
    assert run["state"] == "success", run
    t["train_run_s"] = time.monotonic() - t0 - sum(t.values())
    tis = task_instances(target, "train_model", run["dag_run_id"])
    run_key = run["dag_run_id"].replace(":", "").replace("+", "")
    version = str(lake.read_json(layout.gate(run_key), layout.GATE_DECISION)["version"])

    def deployed():
        found = [r for r in runs(target, "deploy_model") if str((r.get("conf") or {}).get("version")) == version]
        return found[0] if found and found[0]["state"] in TERMINAL else None

    assert wait("the deploy_model run", deployed, 600, every_s=1)["state"] == "success"
    wait(
        "the service to serve the champion",
        lambda: httpx.get(serve_url + "/health", timeout=30).json().get("champion") == version,
        300,
        every_s=1,
    )
    t["deploy_and_serve_s"] = time.monotonic() - t0 - sum(t.values())
    from include.mlops.simulate.traffic import requests_for

    r = httpx.post(
        serve_url + "/predict/batch",
        json={"flights": requests_for(DAYS[-1])[:100]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert r.status_code == 200 and {p["version"] for p in r.json()["predictions"]} == {version}, r.text[:300]
    job = lake.read_json(layout.training(run_key), layout.TRAINING_JOB)
    return {k: round(v, 1) for k, v in t.items()} | {
        "lifecycle_s": round(time.monotonic() - t0, 1),
        "train_tasks_s": {k: _seconds(v) for k, v in tis.items() if v["state"] == "success"},
        "horovod_job": {k: job.get(k) for k in ("hosts", "rank_hosts", "wall_s", "launch_s", "train_s")},
        "version": version,
    }


def one_host(pg: str) -> dict:
    """``make up-prod``'s deployment on this machine, started, run, stopped."""
    from deploy_support import UP, bench_deployment, launcher

    # as many task slots as the cluster's two workers
    settings = SMALL_SCALE | {"AIRFLOW__CORE__PARALLELISM": "4"}
    with bench_deployment(pg, "mlops-bench-cluster-", settings) as dep:
        t0 = time.monotonic()
        up = launcher(dep.env, *UP)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        start_s = time.monotonic() - t0
        os.environ.update({"MLOPS_HOME": dep.env["MLOPS_HOME"], "MLOPS_LAKE_URL": dep.env["MLOPS_LAKE_URL"]})
        return {"start_s": round(start_s, 1)} | lifecycle(dep, dep.lake, dep.serve_url, dep.serve_token)


def on_the_cluster() -> dict:
    """The test hosts, started, run, removed."""
    from cluster_hosts import lake_of, new_cluster

    c = new_cluster(Path(tempfile.mkdtemp(prefix="mlops-bench-cluster-")), "b", 76)
    t0 = time.monotonic()
    try:
        env = c.up(airflow=True, settings=SMALL_SCALE)
        start_s = time.monotonic() - t0
        token = (c.home / "serve_token").read_text().strip()
        return {"start_s": round(start_s, 1)} | lifecycle(c, lake_of(env), c.serve_url, token)
    finally:
        c.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--where", nargs="+", choices=["one-host", "cluster"], default=["one-host", "cluster"])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cluster"))
    args = ap.parse_args()
    from pg_server import postgres_for_tests

    results = {}
    with postgres_for_tests() as (pg, _server):
        for where in args.where:
            results[where] = one_host(pg) if where == "one-host" else on_the_cluster()
            print(where, json.dumps(results[where], indent=2), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "days": DAYS,
        "settings": SMALL_SCALE,
        "results": results,
    }
    (out / "cluster.json").write_text(json.dumps(record, indent=2))
    steps = ["start_s", "dags_parsed_s", "ingest_4_days_s", "train_run_s", "deploy_and_serve_s", "lifecycle_s"]
    print("| step (s) | " + " | ".join(results) + (" | cluster / one host |" if len(results) == 2 else " |"))
    print("|---" * (len(results) + 1 + (len(results) == 2)) + "|")
    for step in steps + ["horovod job wall"]:
        vals = [r["horovod_job"]["wall_s"] if step == "horovod job wall" else r[step] for r in results.values()]
        ratio = f" | {vals[1] / vals[0]:.2f}" if len(vals) == 2 and vals[0] else ""
        print(f"| {step} | " + " | ".join(f"{v:.1f}" for v in vals) + ratio + " |")


if __name__ == "__main__":
    main()
