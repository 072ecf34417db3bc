"""`make demo`: two weeks of 2013 through ingest_flights (faults included), train_model, deploy_model, the
prediction service with replayed traffic, a second train_model and, when it passes the gate, a canary.

Each day the upstream simulator drops that day's flights and weather into landing/, then the real DAG runs
with `airflow dags test ingest_flights <date>` (exactly as a user would run it). One drop arrives
temporarily unavailable (ingestion retries with backoff), one arrives late (the sensor waits), one is corrupt
(it is quarantined). Then train_model trains on what was curated with 2 Horovod workers, tracks the run in
MLflow and registers a model version. Airflow's own output goes to $MLOPS_HOME/logs/demo/.

    python scripts/demo.py [--start 2013-01-01] [--days 14] [--corrupt-kind duplicates]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.mlops.config import Settings  # noqa: E402
from include.mlops.lake import Lake  # noqa: E402
from include.mlops.sources.upstream import CORRUPT_FAULTS, Upstream  # noqa: E402


def airflow_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MLOPS_HOME", str(settings.home))
    env.setdefault("AIRFLOW_HOME", str(settings.home / "airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    # a replay has no reason to wait minutes between pokes and retries
    env.setdefault("MLOPS_SENSOR_POKE_S", "2")
    env.setdefault("MLOPS_RETRY_DELAY_S", "2")
    return env


def retries_taken(dag_id: str, env: dict[str, str]) -> dict[str, int]:
    """try_number - 1 of every task instance that needed more than one try, per logical date."""
    code = (
        "from airflow.utils.session import create_session\n"
        "from airflow.models import TaskInstance, DagRun\n"
        "with create_session() as s:\n"
        "    rows = s.query(DagRun.logical_date, TaskInstance.task_id, TaskInstance.try_number)"
        f".join(DagRun, (DagRun.run_id == TaskInstance.run_id) & (DagRun.dag_id == TaskInstance.dag_id))"
        f".filter(TaskInstance.dag_id == {dag_id!r}, TaskInstance.try_number > 1).all()\n"
        "    for d, t, n in rows: print(d.date().isoformat(), t, n - 1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    taken: dict[str, int] = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            taken[parts[0]] = taken.get(parts[0], 0) + int(parts[2])
    return taken


def train(settings: Settings, env: dict[str, str], logs: Path, end: dt.date, days: int, workers: int) -> None:
    """train_model on the curated window, exactly as the Asset trigger would run it, then show the version."""
    conf = {"end_date": end.isoformat(), "window_days": days, "min_days": min(10, days), "workers": workers,
            "reason": "demo"}
    print(f"\n== train_model ({workers} Horovod workers) " + "=" * 50)
    t0 = time.monotonic()
    with open(logs / "train_model.log", "w") as fh:
        rc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "test", "train_model",
                             end.isoformat(), "-c", json.dumps(conf)], env=env, stdout=fh,
                            stderr=subprocess.STDOUT).returncode
    print(f"run: {'success' if rc == 0 else 'failed'} in {time.monotonic() - t0:.0f} s "
          f"(log: {logs / 'train_model.log'})")
    from include.mlops import registry

    os.environ.setdefault("MLOPS_HOME", str(settings.home))
    for v in registry.versions(settings)[-3:]:
        import mlflow

        r = mlflow.get_run(v["run_id"])
        m, t = r.data.metrics, r.data.tags
        print(f"model {registry.model_name()} version {v['version']}: "
              f"run {v['run_id'][:8]}, window {t.get('data_window')}, fingerprint {t.get('data_fingerprint', '')[:12]}, "
              f"workers {r.data.params.get('workers')}, train {m.get('train_s', 0):.1f} s "
              f"(job {m.get('wall_s', 0):.1f} s with launch), validation AUC {m.get('validation_auc', 0):.3f}, "
              f"test AUC {m.get('test_auc', 0):.3f}, log-loss {m.get('test_logloss', 0):.3f}, gate "
              + ("passed (challenger)" if m.get("gate_passed") == 1.0 else
                 "failed (aliases unchanged)" if m.get("gate_passed") == 0.0 else "not run"))
        report = t.get("lake", "").replace("/training/", "/reports/gate/")
        if report:
            print(f"  gate report: {report}/report.html")
    print(f"MLflow UI: .venv/bin/mlflow ui --backend-store-uri {registry.tracking_uri(settings)} --port 5000")
    latest = registry.versions(settings)[-1] if registry.versions(settings) else None
    if latest:
        import mlflow

        latest["gate_passed"] = mlflow.get_run(latest["run_id"]).data.metrics.get("gate_passed") == 1.0
    return latest


def airflow_cmd(env: dict[str, str], log: Path, *args: str, background: bool = False):
    fh = open(log, "w")
    cmd = [str(Path(sys.executable).parent / "airflow"), *args]
    if background:
        return subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    fh.close()
    return rc


def curate_day(lake: Lake, d: dt.date) -> int:
    """Ingest a day with the ingestion DAG's own steps (used while deploy_model holds the SQLite database)."""
    from include.mlops import ingestion
    from include.mlops.config import dataset

    settings = Settings.from_env()
    rows = 0
    for name in ("weather", "flights"):
        Upstream(lake).publish(d, name)
        b = ingestion.batch(dataset(name), d)
        ingestion.extract(lake, b)
        ingestion.check(lake, b, settings)
        rows = ingestion.curate(lake, b)["rows"]
    return rows


def rollout(settings: Settings, env: dict[str, str], logs: Path, lake: Lake, first: dict, last_day: dt.date,
            workers: int) -> None:
    """Deploy the first model, serve traffic, train a second model on later data and canary it."""
    import socket

    import httpx

    from include.mlops import deployment, registry
    from include.mlops.sources.traffic import replay

    print("\n== deployment " + "=" * 70)
    if not first or not first.get("gate_passed"):
        print("the first model did not pass the gate: nothing to deploy (see its gate report)")
        return
    rc = airflow_cmd(env, logs / "deploy_model-1.log", "dags", "test", "deploy_model", last_day.isoformat(),
                     "-c", json.dumps({"version": first["version"]}))
    print(f"deploy_model v{first['version']}: {'success' if rc == 0 else 'failed'}; champion is now "
          f"v{(registry.alias_version('champion', settings) or {}).get('version')}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    serve_env = env | {"MLOPS_SERVE_PORT": str(port), "MLOPS_SERVE_REFRESH_S": "1", "MLOPS_HOME": str(settings.home)}
    service = subprocess.Popen([sys.executable, "-m", "include.mlops.serving.app"], env=serve_env, cwd=ROOT,
                               stdout=open(logs / "serve.log", "w"), stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                if httpx.get(url + "/health").json().get("champion"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        print(f"prediction service at {url}: {httpx.get(url + '/versions').json()}")
        day = last_day
        for _ in range(4):  # production days: predictions before departure, outcomes ingested afterwards
            day += dt.timedelta(days=1)
            r = replay(day, url)
            rows = curate_day(lake, day)
            print(f"{day}  traffic: {r.flights} flights predicted ({r.requests} requests, {r.errors} errors, "
                  f"arms {r.arms}); outcomes ingested: {rows} flights")
        second = train(settings, env, logs, day, (day - dt.date(2013, 1, 1)).days + 1, workers)
        if not second or second["version"] == first["version"] or not second.get("gate_passed"):
            print("the second model did not pass the gate: the champion stays")
            return
        deploy_env = env | {"MLOPS_DEPLOY_POKE_S": "2"}
        conf = {"version": second["version"], "canary_share": 0.5, "min_labelled_per_arm": 300}
        proc = airflow_cmd(deploy_env, logs / "deploy_model-2.log", "dags", "test", "deploy_model",
                           day.isoformat(), "-c", json.dumps(conf), background=True)
        print(f"\ncanary: v{second['version']} against champion v{first['version']} on 50 % of flights")
        for _ in range(120):
            if (deployment.current(lake) or {}).get("status") == "canary" and \
                    httpx.get(url + "/versions").json().get("challenger") == second["version"]:
                break
            time.sleep(1)
        while proc.poll() is None and day < dt.date(2013, 12, 30):
            day += dt.timedelta(days=1)
            r = replay(day, url)
            time.sleep(1.5)  # the service writes its prediction log in batches
            rows = curate_day(lake, day)
            print(f"{day}  traffic: {r.flights} flights (arms {r.arms}); outcomes ingested: {rows} flights")
            for _ in range(10):
                if proc.poll() is not None:
                    break
                time.sleep(1)
        proc.wait(timeout=600)
        ev_name = f"v{second['version']}.json"
        if lake.exists("reports", "deployments", ev_name):
            ev = lake.read_json("reports", "deployments", ev_name)
            print("decision: " + deployment.describe(ev))
            print(f"live AUC by arm: { {k: round(v, 4) for k, v in ev['live_auc_by_arm'].items()} }")
        print(f"champion now v{(registry.alias_version('champion', settings) or {}).get('version')}; "
              f"service: {httpx.get(url + '/versions').json()}; predictions logged: "
              f"{httpx.get(url + '/health').json()['logged']} ({lake.uri('predictions')})")
    finally:
        service.terminate()
        service.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2013-01-01")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--corrupt-kind", default="duplicates", choices=CORRUPT_FAULTS)
    ap.add_argument("--workers", type=int, default=2, help="Horovod workers for train_model")
    ap.add_argument("--no-train", action="store_true", help="stop after ingestion")
    ap.add_argument("--no-rollout", action="store_true", help="stop after the first training")
    args = ap.parse_args(argv)

    settings = Settings.from_env()
    env = airflow_env(settings)
    lake = Lake(settings.lake_url)
    upstream = Upstream(lake)
    logs = settings.home / "logs" / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    start = dt.date.fromisoformat(args.start)
    dates = [start + dt.timedelta(days=i) for i in range(args.days)]
    faults = {}
    if args.days >= 3:
        faults[dates[min(4, args.days - 1)]] = "unavailable"
        faults[dates[min(8, args.days - 2)]] = args.corrupt_kind
    if args.days >= 12:
        faults[dates[11]] = "late"

    print(f"MLOPS_HOME={settings.home}\nlake: {lake.url}\nAirflow logs: {logs}\n")
    results = []
    t_all = time.monotonic()
    for d in dates:
        fault = faults.get(d)
        drops = upstream.publish_day(d, fault=fault, delay_s=6, failures=2)
        t0 = time.monotonic()
        with open(logs / f"{d}.log", "w") as fh:
            rc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "dags", "test", "ingest_flights",
                                 d.isoformat()], env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
        for drop in drops:
            drop.wait(5)
        took = time.monotonic() - t0
        state = "success" if rc == 0 else "failed"
        print(f"{d}  drop fault: {fault or '-':12s} run: {state:7s} ({took:4.1f} s)", flush=True)
        results.append((d, fault, state, took))

    retries = retries_taken("ingest_flights", env)
    print("\n== Summary " + "=" * 70)
    curated_rows = 0
    print(f"{'date':12s}{'fault':14s}{'outcome':13s}{'flights':>8s}{'labelled':>9s}{'delayed':>8s}  {'retries':>7s}  rule(s) failed")
    for d, fault, state, _ in results:
        cur = Lake.partition("curated", "flights", d)
        quar = Lake.partition("quarantine", "flights", d)
        rows = labelled = "-"
        rate = "-"
        rules = ""
        if lake.exists(cur, "part-00000.parquet") and state == "success":
            df = lake.read_parquet(cur, "part-00000.parquet")
            rows, labelled = len(df), int(df["is_labelled"].sum())
            rate = f"{df['label'].astype('Float64').mean():.1%}"
            curated_rows += rows
            outcome = "curated"
        elif lake.exists(quar, "report.json"):
            rep = lake.read_json(quar, "report.json")
            outcome = "quarantined"
            rules = "; ".join(rep.get("failed_rules", []))
        else:
            outcome = state
        print(f"{d.isoformat():12s}{fault or '-':14s}{outcome:13s}{rows!s:>8s}{labelled!s:>9s}{rate:>8s}  "
              f"{retries.get(d.isoformat(), 0):>7d}  {rules}")
    n_cur = sum(1 for d, *_ in results if lake.exists(Lake.partition("curated", "flights", d), "part-00000.parquet"))
    n_q = sum(1 for d, *_ in results if lake.exists(Lake.partition("quarantine", "flights", d), "report.json"))
    print(f"\n{n_cur} date(s) curated ({curated_rows} flights), {n_q} quarantined, "
          f"{sum(retries.values())} retr(y/ies) taken, {time.monotonic() - t_all:.0f} s in all.")
    print(f"Curated: {lake.uri('curated', 'flights')}\nQuarantine: {lake.uri('quarantine', 'flights')}")
    if not args.no_train:
        first = train(settings, env, logs, dates[-1], len(dates), args.workers)
        if not args.no_rollout:
            rollout(settings, env, logs, lake, first, dates[-1], args.workers)
    print()
    print("Slack messages (no slack_default connection: written to the task logs, marked "
          "'[slack: not configured, message logged instead]'):")
    for log in sorted(logs.glob("*.log")):
        text = log.read_text(errors="replace")
        for block in text.split("[slack: not configured, message logged instead]")[1:]:
            first = next((ln.strip() for ln in block.splitlines() if ln.strip().startswith("[")), "")
            print(f"  {log.stem}: {first}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
