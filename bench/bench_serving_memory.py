"""The prediction service's resident memory after large batches, with and without giving freed memory back.

A LightGBM model trained on two weeks of January 2013 (50 rounds) serves ``--batches`` batches of ``--flights``
replayed February flights (``POST /predict/batch``, one client), in a service process of its own as ``make serve``
runs it (``include.mlops.serve.app``, the bearer token on, the prediction log on). The service's resident set
(VmRSS, ``/proc/<pid>/status``) is read before the first batch, after each batch, and after ``--idle`` seconds
without requests; once as the service runs (**release**: it returns freed heap memory to the system after a large
batch, ``serve.app.release_memory``) and once with that switched off (**keep**: what it did before).

    .venv/bin/python bench/bench_serving_memory.py [--batches 10] [--flights 10000] [--idle 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_serving import TOKEN, free_port, load_model  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def serve(folder: Path, port: int, release: bool) -> None:
    from include.mlops.core.lake import Lake
    from include.mlops.serve import app as service
    from include.mlops.serve.models import ModelStore
    from include.mlops.serve.server import Limits, make_server

    if not release:
        service.release_memory = lambda: None  # as before: freed memory stays with the process
    model = load_model(folder)
    store = ModelStore(lambda: ({"champion": "1", "challenger": None}, 0.0), lambda v: model)
    app = service.create_app(
        store, Lake((folder / "lake").as_uri()), refresh_s=3600, flush_s=2, token=TOKEN, freeze_gc=True
    )  # as `make serve` runs it
    make_server(app, "127.0.0.1", port, Limits(), log_level="warning").run()


def measure(folder: Path, body: bytes, batches: int, concurrency: int, idle: float, release: bool) -> dict:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "_serve", str(folder), str(port), "1" if release else "0"], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, "the service exited"
                time.sleep(0.1)
        time.sleep(3)  # start-up done (the prediction log's writer started)
        before = rss_mb(proc.pid)
        after = []
        headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}

        def send(_):
            with httpx.Client(base_url=url, timeout=300) as client:
                r = client.post("/predict/batch", content=body, headers=headers)
                assert r.status_code == 200, r.text[:300]

        with ThreadPoolExecutor(concurrency) as pool:
            for _ in range(0, batches, concurrency):
                list(pool.map(send, range(concurrency)))
                after.append(round(rss_mb(proc.pid)))
        time.sleep(idle)
        return {"before_mb": round(before), "after_each_batch_mb": after, "after_idle_mb": round(rss_mb(proc.pid))}
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    from curation import write_curated

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--flights", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=1, help="batches sent at once")
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--json")
    args = ap.parse_args()

    from include.mlops.core import frame
    from include.mlops.core.lake import Lake
    from include.mlops.kinds import lightgbm as lgbm
    from include.mlops.simulate.traffic import requests_for
    from include.mlops.train import features as F
    from include.mlops.train.params import load as load_params

    folder = Path(tempfile.mkdtemp(prefix="bench-serve-memory-"))
    lake = Lake((folder / "lake").as_uri())
    write_curated(lake, [f"2013-01-{d:02d}" for d in range(1, 15)])
    fl, we, _ = frame.load_window(lake, "2013-01-14", 14)
    ts = F.build(fl, we)
    booster = lgbm.train_single(
        ts.part("train"),
        ts.part("validation"),
        ts.spec.columns,
        ts.spec.categorical,
        lgbm.params(load_params()["lgbm"], threads=1),
        50,
    )
    booster.save_model(str(folder / "model.txt"))
    (folder / "spec.json").write_text(json.dumps(ts.spec.to_dict()))
    flights = []
    day = 5
    while len(flights) < args.flights:
        flights += requests_for(f"2013-02-{day:02d}")
        day += 1
    body = json.dumps({"flights": flights[: args.flights]}).encode()
    results = {}
    for release in (False, True):
        name = "release" if release else "keep"
        results[name] = measure(folder, body, args.batches, args.concurrency, args.idle, release)
        print(name, json.dumps(results[name]), flush=True)
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "batches": args.batches,
        "flights": args.flights,
        "concurrency": args.concurrency,
        "body_bytes": len(body),
        "results": results,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1")
    else:
        main()
