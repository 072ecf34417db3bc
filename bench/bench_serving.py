"""Prediction service latency and throughput against calling the LightGBM booster directly in-process.

A model trained on January 2013 serves replayed February flights. Over real HTTP (uvicorn, one worker, on
this host), a fixed number of concurrent clients send single-flight and 50-flight batch requests; the baseline
calls the same booster on the same inputs in-process (encode + predict, no HTTP, no validation, no logging).
The ratio of latencies is the serving overhead.

    .venv/bin/python bench/bench_serving.py [--requests 2000] [--concurrency 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from include.mlops.train import features as F  # noqa: E402
from include.mlops.core.lake import Lake  # noqa: E402
from include.mlops.serve.app import create_app  # noqa: E402
from include.mlops.serve.models import ModelStore, ServedModel  # noqa: E402
from include.mlops.ingest.traffic import requests_for  # noqa: E402
from include.mlops.train import lgbm  # noqa: E402


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000, q))


def summarise(lat, wall, n_flights):
    return {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
            "requests_per_s": round(len(lat) / wall, 1), "flights_per_s": round(n_flights / wall, 1)}


def main() -> None:
    from curation import curate_days

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args()

    lake = Lake((Path(tempfile.mkdtemp(prefix="bench-serve-")) / "lake").as_uri())
    curate_days(lake, "2013-01-01", 31)
    fl, we, _ = F.load_window(lake, "2013-01-31", 31)
    ts = F.build(fl, we)
    booster = lgbm.train_single(ts.part("train"), ts.part("validation"), ts.spec.columns, ts.spec.categorical,
                                lgbm.params({}, threads=1), 200)
    model = ServedModel("1", booster, ts.spec)
    store = ModelStore(lambda: ({"champion": "1", "challenger": None}, 0.0), lambda v: model)
    flights = requests_for("2013-02-05") + requests_for("2013-02-06")
    flights = [{k: (v if v is None or not isinstance(v, float) or v == v else None) for k, v in f.items()}
               for f in flights]

    import httpx
    import uvicorn

    app = create_app(store, lake, refresh_s=3600, flush_rows=1000, flush_s=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            httpx.get(url + "/health")
            break
        except httpx.HTTPError:
            time.sleep(0.1)

    results = {}
    for kind, size in (("single", 1), ("batch", args.batch)):
        payloads = [flights[(i * size) % (len(flights) - size):][:size] for i in range(args.requests)]
        bodies = [p[0] if size == 1 else {"flights": p} for p in payloads]

        # in-process baseline: the same booster on the same inputs, no HTTP, no validation, no logging
        lat = []
        t0 = time.perf_counter()
        for p in payloads:
            t = time.perf_counter()
            raw = pd.DataFrame(p)
            ts_ = pd.to_datetime(raw["time_hour"], utc=True)
            raw["event_hour_utc"], raw["event_weekday"] = ts_.dt.hour, ts_.dt.weekday
            model.predict(raw)
            lat.append(time.perf_counter() - t)
        base = summarise(lat, time.perf_counter() - t0, len(payloads) * size)

        with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=args.concurrency)) as c:
            for b in bodies[:50]:
                c.post("/predict", json=b)  # warm-up

            def send(b):
                t = time.perf_counter()
                r = c.post("/predict", json=b)
                assert r.status_code == 200, r.text
                return time.perf_counter() - t

            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                lat = list(pool.map(send, bodies))
            http = summarise(lat, time.perf_counter() - t0, len(bodies) * size)
        results[kind] = {"flights_per_request": size, "in_process": base, "http": http,
                         "p50_ratio": round(http["p50_ms"] / base["p50_ms"], 1),
                         "throughput_ratio": round(base["flights_per_s"] / http["flights_per_s"], 1)}
        print(kind, json.dumps(results[kind]), flush=True)
    server.should_exit = True
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
           "requests": args.requests, "concurrency": args.concurrency, "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
