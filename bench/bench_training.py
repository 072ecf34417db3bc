"""Horovod-distributed LightGBM against single-process LightGBM with the same total threads.

For each data set (real: curated flights of at least three months; synthetic: a few million rows x 40
features) and each worker count N in --workers: the Horovod job with N ranks x 1 thread, against one process
with N threads, same rounds, same bins (one shared sample). Reports wall time with and without the launch,
peak memory per worker, test AUC, and the ratio Horovod / single.

    .venv/bin/python bench/bench_training.py [--months 3] [--synthetic-rows 2000000] [--workers 1 2 4]
        [--rounds 100] [--json bench/results/training.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from include.mlops.core import frame  # noqa: E402
from include.mlops.core.config import Settings  # noqa: E402
from include.mlops.core.lake import Lake  # noqa: E402
from include.mlops.core.metrics import metrics  # noqa: E402
from include.mlops.core.schema import dataset  # noqa: E402
from include.mlops.ingest import ingestion  # noqa: E402
from include.mlops.train import features as F  # noqa: E402
from include.mlops.train.distributed import write_training_set  # noqa: E402
from include.mlops.train.pipeline import train  # noqa: E402


def flights_set(lake: Lake, months: int) -> F.TrainingSet:
    from include.mlops.simulate.upstream import Upstream

    up, settings = Upstream(lake), Settings.from_env()
    start = dt.date(2013, 1, 1)
    end = dt.date(2013, 1 + months, 1) if months < 12 else dt.date(2014, 1, 1)
    d = start
    while d < end:
        for name in ("weather", "flights"):
            if name == "weather" and d == dt.date(2013, 12, 31):
                continue
            up.publish(d, name)
            b = ingestion.batch(dataset(name), d)
            ingestion.extract(lake, b)
            ingestion.check(lake, b, settings)
            ingestion.curate(lake, b)
        d += dt.timedelta(days=1)
    fl, we, _ = frame.load_window(lake, end - dt.timedelta(days=1), (end - start).days)
    return F.build(fl, we)


def synthetic_set(rows: int, n_features: int = 40, seed: int = 0) -> F.TrainingSet:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, n_features), dtype=np.float32)
    logit = X[:, 0] * 1.5 - X[:, 1] + 0.8 * X[:, 2] * X[:, 3] + np.sin(3 * X[:, 4]) + 0.5 * (X[:, 5] > 1)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(logit - 1.0)))).astype("int8")
    cols = [f"f{i:02d}" for i in range(n_features)]
    frame = pd.DataFrame(X, columns=cols)
    days = [dt.date(2013, 1, 1) + dt.timedelta(days=int(i)) for i in range(20)]
    frame.insert(0, "batch_date", np.repeat(days, -(-rows // 20))[:rows])
    frame.insert(0, "flight_key", np.arange(rows).astype(str))
    frame["label"] = y
    spec = frame.FeatureSpec(numeric=cols, categorical=[], categories={})
    split = F.time_split(days)
    return F.TrainingSet(frame=frame, spec=spec, split=split, fingerprint="synthetic")


def single(ts: F.TrainingSet, threads: int, rounds: int) -> dict:
    """One process, `threads` threads, in a fresh interpreter (so that its peak memory is its own)."""
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("train", "validation", "test"):
            ts.part(part).to_parquet(f"{tmp}/{part}.parquet")
        code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT)!r})
import pandas as pd
from include.mlops.core.metrics import metrics
from include.mlops.kinds import lightgbm as lgbm
from include.mlops.train.params import load as load_params
t0 = time.time()
tr, va, te = (pd.read_parquet({tmp!r} + f"/{{p}}.parquet") for p in ("train", "validation", "test"))
cols, cat = {ts.spec.columns!r}, {ts.spec.categorical!r}
t1 = time.time()
b = lgbm.train_single(tr, va, cols, cat, lgbm.params(load_params()["lgbm"], threads={threads}), {rounds})
t2 = time.time()
auc = metrics(te["label"], b.predict(te[cols]))["auc"]
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({{"wall_s": t2 - t0, "train_s": t2 - t1, "auc": auc, "max_rss_mb": hwm / 1024}}))
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def horovod(lake: Lake, key: str, ts: F.TrainingSet, workers: int, rounds: int) -> dict:
    import lightgbm as lgb

    write_training_set(lake, f"training/{key}", ts, shards=workers)
    s = train(lake, key, workers, num_boost_round=rounds, threads_per_worker=1, timeout_s=3600)
    booster = lgb.Booster(model_str=lake.read_bytes(f"training/{key}", "model.txt").decode())
    test = ts.part("test")
    s["auc"] = metrics(test["label"], booster.predict(test[ts.spec.columns]))["auc"]
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--synthetic-rows", type=int, default=2_000_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--json")
    args = ap.parse_args()
    lake = Lake((Path(tempfile.mkdtemp(prefix="bench-train-")) / "lake").as_uri())
    sets = {}
    if args.months:
        t = time.time()
        sets[f"flights {args.months} months"] = flights_set(lake, args.months)
        print(f"flights training set built in {time.time() - t:.0f} s", flush=True)
    if args.synthetic_rows:
        sets[f"synthetic {args.synthetic_rows:,} x 40"] = synthetic_set(args.synthetic_rows)
    rows = []
    for name, ts in sets.items():
        n_train = len(ts.part("train"))
        for w in args.workers:
            base = single(ts, w, args.rounds)
            hv = horovod(lake, f"bench-{len(rows)}", ts, w, args.rounds)
            row = {
                "data": name,
                "train_rows": n_train,
                "workers": w,
                "threads_total": w,
                "single_wall_s": round(base["wall_s"], 2),
                "single_train_s": round(base["train_s"], 2),
                "single_rss_mb": round(base["max_rss_mb"]),
                "single_auc": round(base["auc"], 4),
                "horovod_wall_s": hv["wall_s"],
                "horovod_launch_s": hv["launch_s"],
                "horovod_train_s": hv["train_s"],
                "horovod_rss_mb_per_worker": hv["max_rss_mb"],
                "horovod_auc": round(hv["auc"], 4),
                "ratio_wall": round(hv["wall_s"] / base["wall_s"], 2),
                "ratio_train": round(hv["train_s"] / base["train_s"], 2),
                "auc_diff": round(hv["auc"] - base["auc"], 4),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    res = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "rounds": args.rounds,
        "rows": rows,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
