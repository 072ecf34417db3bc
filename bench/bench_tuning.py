"""The same tuning study three ways, in one run: one trial at a time under Airflow, trials side by side under
Airflow, and Optuna's own ``study.optimize(n_jobs=2)`` in one process (what a data scientist reaches for).

Airflow here is the production-shaped deployment (``scripts/prod/supervisor.py``: scheduler, dag-processor,
triggerer, api-server, the LocalExecutor with parallelism 2, PostgreSQL), the one the deployment tests start.
``tune_model`` is triggered over REST with the same study (seed, trials, trials per round, window); the
``tuning`` pool's slots make the difference: 1 (one trial at a time) or 2 (side by side). The Optuna baseline
trains the same proposals' way (``train.tune``'s kind ``fit`` on the same staged training set, one LightGBM thread
per trial), with the same seed, start-up trials and first trial (params.yaml's values).

Reported per way: wall time (the DAG run's start to end; ``optimize``'s call), trials completed, the best
validation log-loss, trials per wall-minute and the time to reach within 0.001 of the study's best. Two trial
sizes: the window's days set the trial's cost (a trial is one LightGBM fit on it).

    .venv/bin/python bench/bench_tuning.py [--trials 12] [--per-round 3] [--windows 14 42] [--out bench/results/tuning]

Needs PostgreSQL (``MLOPS_TEST_PG``, default postgresql://postgres@127.0.0.1:5432, or the server binaries for a
throw-away one) and about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "tests" / "helpers", ROOT / "tests" / "deploy", ROOT / "plugins"):
    sys.path.insert(0, str(p))

END = "2013-02-28"


def _days(window: int) -> list[str]:
    end = dt.date.fromisoformat(END)
    return [(end - dt.timedelta(days=i)).isoformat() for i in range(window)][::-1]


def optuna_in_process(
    lake, training_set: str, trials: int, per_round: int, seed: int, jobs: int, rounds: int | None
) -> dict:
    """Optuna's own loop on the same staged training set, ``n_jobs`` threads."""
    import optuna
    import pandas as pd

    from include.mlops import kinds
    from include.mlops.core import layout
    from include.mlops.core.metrics import metrics
    from include.mlops.train import params, tune

    p = params.load()
    kind = p["train"]["kind"]
    dists = tune.space(p["tune"], kind)
    ts = layout.training(training_set)
    meta = lake.read_json(ts, layout.TRAINING_SPEC)
    train = pd.concat(
        [lake.read_parquet(ts, *layout.training_shard(i)) for i in range(meta["shards"])], ignore_index=True
    )
    validation = lake.read_parquet(ts, layout.TRAINING_VALIDATION)
    spec = kinds.spec_of(meta["spec"])
    module = kinds.kind(kind)
    base = p[params.section(kind)]
    t0 = time.monotonic()
    reached: list[tuple[float, float]] = []

    def objective(trial):
        values = base | {n: suggest(trial, n, d) for n, d in dists.items()}
        model = tune._fit(module, train, validation, spec, values, rounds or p["train"]["num_boost_round"])
        v = metrics(validation[spec.label].to_numpy(), model.predict_encoded(validation[spec.columns]))["logloss"]
        reached.append((time.monotonic() - t0, v))
        return v

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=tune.sampler(seed, per_round))
    study.enqueue_trial(tune.defaults(kind, dists))
    study.optimize(objective, n_trials=trials, n_jobs=jobs)
    wall = time.monotonic() - t0
    return {"wall_s": wall, "values": [v for _, v in sorted(reached)], "reached": sorted(reached)}


def suggest(trial, name: str, d):
    """A value of ``d`` (one of ``tune.space``'s distributions) through Optuna's public API."""
    if hasattr(d, "choices"):
        return trial.suggest_categorical(name, list(d.choices))
    if isinstance(d.low, int) and isinstance(d.high, int) and type(d).__name__ == "IntDistribution":
        return trial.suggest_int(name, d.low, d.high, log=d.log)
    return trial.suggest_float(name, d.low, d.high, log=d.log)


def airflow_study(dep, conf: dict, slots: int) -> dict:
    r = dep.api(
        "PATCH",
        "/api/v2/pools/tuning",
        params={"update_mask": "slots"},
        json={"pool": "tuning", "slots": slots, "include_deferred": False},
    )
    assert r.status_code == 200, r.text
    run = dep.trigger("tune_model", conf=conf)["dag_run_id"]

    def done():
        state = dep.get(f"/api/v2/dags/tune_model/dagRuns/{quote(run, safe='')}")["state"]
        return state if state in ("success", "failed") else None

    state = dep.wait_for(f"tune_model ({slots} slot(s))", done, 1800, every_s=2)
    info = dep.get(f"/api/v2/dags/tune_model/dagRuns/{quote(run, safe='')}")
    tis = dep.get(f"/api/v2/dags/tune_model/dagRuns/{quote(run, safe='')}/taskInstances", params={"limit": 200})[
        "task_instances"
    ]
    start, end = dt.datetime.fromisoformat(info["start_date"]), dt.datetime.fromisoformat(info["end_date"])
    trials = [t for t in tis if t["task_id"].startswith("trials_") and t["state"] in ("success", "failed")]
    from include.mlops.train import tune

    result = tune.latest(dep.lake)
    ends = {}
    for t in trials:
        ends[(t["task_id"], t["map_index"])] = (dt.datetime.fromisoformat(t["end_date"]) - start).total_seconds()
    # each trial's value by its task instance: trial numbers follow the rounds and map indexes
    by_number = {t["number"]: t for t in result["trials"]}
    reached = []
    for (task, idx), at in ends.items():
        r = int(task.split("_")[1])
        number = sum(1 for t in result["trials"] if t.get("round", 0) < r) + idx
        t = by_number.get(number)
        if t and t["state"] == "complete":
            reached.append((at, t["value"]))
    return {
        "state": state,
        "wall_s": (end - start).total_seconds(),
        "values": [t["value"] for t in result["trials"] if t["state"] == "complete"],
        "reached": sorted(reached),
        "study_id": result["study_id"],
        "task_s": sorted(
            (dt.datetime.fromisoformat(t["end_date"]) - dt.datetime.fromisoformat(t["start_date"])).total_seconds()
            for t in trials
        ),
    }


def summary(name: str, r: dict, best: float) -> dict:
    values = r["values"]
    within = next((at for at, v in r["reached"] if v <= best + 0.001), None)
    return {
        "way": name,
        "wall_s": round(r["wall_s"], 1),
        "trials": len(values),
        "best": round(min(values), 5) if values else None,
        "trials_per_min": round(len(values) / (r["wall_s"] / 60), 2),
        "within_0.001_of_best_s": None if within is None else round(within, 1),
        "median_trial_task_s": None if not r.get("task_s") else round(sorted(r["task_s"])[len(r["task_s"]) // 2], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--windows", type=int, nargs="+", default=[14, 42])
    ap.add_argument("--num-boost-round", type=int, default=None, help="each trial's rounds (default params.yaml's)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "tuning"))
    args = ap.parse_args()

    from curation import write_curated
    from deploy_support import UP, bench_deployment, launcher
    from pg_server import postgres_for_tests

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, runs = [], {}
    with postgres_for_tests() as (pg, _server):
        # trials side by side as far as this machine's cores go
        settings = {"AIRFLOW__CORE__PARALLELISM": "2", "MLOPS_TUNING_POOL_SLOTS": "2"}
        with bench_deployment(pg, "mlops-bench-tuning-", settings) as dep:
            os.environ.update({"MLOPS_HOME": dep.env["MLOPS_HOME"], "MLOPS_LAKE_URL": dep.env["MLOPS_LAKE_URL"]})
            write_curated(dep.lake, _days(max(args.windows)))
            up = launcher(dep.env, *UP)
            assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
            dep.wait_for(
                "tune_model to be parsed",
                lambda: "tune_model" in {d["dag_id"] for d in dep.get("/api/v2/dags", params={"limit": 100})["dags"]},
                180,
            )
            assert dep.api("PATCH", "/api/v2/dags/tune_model", json={"is_paused": False}).status_code == 200
            for window in args.windows:
                rounds = -(-args.trials // args.per_round)
                conf = {
                    "trials": args.trials,
                    "trials_per_round": args.per_round,
                    "rounds": min(rounds, 6),
                    "seed": args.seed,
                    "minutes": 60,
                    "window_days": window,
                    "end_date": END,
                } | ({"num_boost_round": args.num_boost_round} if args.num_boost_round else {})
                seq = airflow_study(dep, conf, 1)
                par = airflow_study(dep, conf, 2)
                inproc = optuna_in_process(
                    dep.lake, seq["study_id"], args.trials, args.per_round, args.seed, 2, args.num_boost_round
                )
                best = min(min(r["values"]) for r in (seq, par, inproc) if r["values"])
                ways = [
                    summary("Airflow, one trial at a time (pool 1 slot)", seq, best),
                    summary("Airflow, trials side by side (pool 2 slots, LocalExecutor parallelism 2)", par, best),
                    summary("Optuna study.optimize(n_jobs=2), one process", inproc, best),
                ]
                for w in ways:
                    w["window_days"] = window
                rows += ways
                runs[window] = {"sequential": seq, "parallel": par, "optuna": inproc}
                print(json.dumps(ways, indent=2), flush=True)
    record = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "args": vars(args),
        "rows": rows,
        "runs": {str(k): v for k, v in runs.items()},
    }
    (out / "tuning.json").write_text(json.dumps(record, indent=2, default=str))
    print("| way | window (days) | wall (s) | trials | best val. log-loss | trials/min | within 0.001 of best (s) |")
    print("|---|---|---|---|---|---|---|")
    for w in rows:
        print(
            f"| {w['way']} | {w['window_days']} | {w['wall_s']} | {w['trials']} | {w['best']} | {w['trials_per_min']} |"
            f" {w['within_0.001_of_best_s']} |"
        )


if __name__ == "__main__":
    main()
