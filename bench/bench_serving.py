"""Prediction service latency and throughput against the framework's ceiling and the bare model.

A LightGBM model trained on January 2013 (200 rounds) serves replayed February flights. In one run, on this host:

- **bare**: a uvicorn + FastAPI endpoint that returns a constant (the framework's ceiling here), one process;
- **service**: ``include.mlops.serve.app`` with that model, one uvicorn process, the bearer token on, validation and
  the prediction log on;
- **in-process**: the same model on the same rows without HTTP: the request path's own encoding (msgspec-decoded
  flights to a NumPy matrix) and ``booster.predict`` with one thread, and, for comparison, the former pandas path.

The load comes from a separate process: an asyncio HTTP/1.1 client holding ``--concurrency`` keep-alive
connections (and ``wrk`` as well, when it is installed). Single flights go to ``POST /predict``, batches of
``--batch`` flights to ``POST /predict/batch``.

    .venv/bin/python bench/bench_serving.py [--requests 4000] [--concurrency 8] [--batch 1000] [--json out.json]

The service runs under the bounded server ``make serve`` uses (``serve/server.py``); ``BENCH_SERVER=uvicorn`` runs
it under uvicorn's own protocol instead, the A/B baseline of that server's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

TOKEN = "bench-token-0123456789abcdefghijklmn"


def pct(xs, q):
    import numpy as np

    return float(np.percentile(np.asarray(xs) * 1000, q))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the servers, each in a process of its own ----------------------------------------------------------------------
def serve_bare(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/predict")
    async def constant():
        return {
            "request_id": "0",
            "predictions": [
                {"flight_key": "2013-02-05/UA/1545/EWR", "delay_probability": 0.25, "version": "1", "arm": "champion"}
            ],
        }

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def load_model(folder: Path):
    import lightgbm as lgb

    from include.mlops.core.frame import FeatureSpec
    from include.mlops.kinds import lightgbm
    from include.mlops.serve.models import ServedModel

    return ServedModel(
        lightgbm.Model(
            lgb.Booster(model_file=str(folder / "model.txt")),
            FeatureSpec.from_dict(json.loads((folder / "spec.json").read_text())),
            "1",
        )
    )


def serve_model(folder: Path, port: int) -> None:
    from include.mlops.core.lake import Lake
    from include.mlops.serve.app import create_app
    from include.mlops.serve.models import ModelStore
    from include.mlops.serve.server import Limits, make_server

    model = load_model(folder)
    store = ModelStore(lambda: ({"champion": "1", "challenger": None}, 0.0), lambda v: model)
    app = create_app(
        store, Lake((folder / "lake").as_uri()), refresh_s=3600, flush_rows=5000, flush_s=2, token=TOKEN, freeze_gc=True
    )  # as `make serve` runs it, under the same bounded server (serve/server.py)
    if os.environ.get("BENCH_SERVER") == "uvicorn":  # the A/B baseline: uvicorn's own protocol, unbounded
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    else:
        make_server(app, "127.0.0.1", port, Limits.from_env(), log_level="warning").run()


def start(args: list[str], port: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT)
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.HTTPError:
            assert proc.poll() is None, f"{args} exited"
            time.sleep(0.1)
    raise RuntimeError(f"{args} did not start")


# the load, from a process of its own ------------------------------------------------------------------------------
async def _connection(port: int, requests: list[bytes], lat: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for req in requests:
            t = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def load(port: int, path: str, bodies_file: str, n: int, concurrency: int, token: str) -> dict:
    """``n`` requests over ``concurrency`` keep-alive connections, each sending its next request as soon as the
    previous one is answered; the bodies are cycled from ``bodies_file`` (a JSON list)."""
    bodies = [json.dumps(b).encode() for b in json.loads(Path(bodies_file).read_text())]
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    reqs = [
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(b)}\r\n\r\n".encode()
        + b
        for b in bodies
    ]
    per = [[reqs[(c + i * concurrency) % len(reqs)] for i in range(n // concurrency)] for c in range(concurrency)]

    async def run(parts):
        lat, statuses = [], {}
        await asyncio.gather(*(_connection(port, p, lat, statuses) for p in parts))
        return lat, statuses

    warm, _ = asyncio.run(run([p[: max(1, len(p) // 10)] for p in per]))  # warm-up
    t0 = time.perf_counter()
    lat, statuses = asyncio.run(run(per))
    wall = time.perf_counter() - t0
    return {
        "requests": len(lat),
        "statuses": statuses,
        "p50_ms": round(pct(lat, 50), 2),
        "p99_ms": round(pct(lat, 99), 2),
        "requests_per_s": round(len(lat) / wall, 1),
        "sent_with_warm_up": len(lat) + len(warm),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux): the server's own cost, whatever else runs on the host."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """The CPU time of a process's live children (the service's prediction log writer), read the same way."""
    kids = [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    return sum(cpu_seconds(k) for k in kids)


def run_load(
    port: int,
    path: str,
    bodies: list,
    n: int,
    concurrency: int,
    token: str = "",
    server: subprocess.Popen | None = None,
) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(bodies, f)
    cpu0 = cpu_seconds(server.pid) if server and Path("/proc").exists() else None
    kids0 = children_cpu_seconds(server.pid) if cpu0 is not None else None
    out = subprocess.run(
        [sys.executable, __file__, "_load", str(port), path, f.name, str(n), str(concurrency), token],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    os.unlink(f.name)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if cpu0 is not None:
        result["server_cpu_us_per_request"] = round(
            (cpu_seconds(server.pid) - cpu0) / result["sent_with_warm_up"] * 1e6
        )
        # the prediction log's writer process, when there is one (its CPU is not the server's, but it is spent)
        result["writer_cpu_us_per_request"] = round(
            (children_cpu_seconds(server.pid) - kids0) / result["sent_with_warm_up"] * 1e6
        )
    return result


def run_wrk(port: int, path: str, body: dict, concurrency: int, token: str = "", seconds: int = 10) -> dict | None:
    if not shutil.which("wrk"):
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        headers = 'wrk.headers["Content-Type"] = "application/json"\n'
        if token:
            headers += f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n{headers}')
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            f.name,
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
    )
    os.unlink(f.name)
    return {"output": out.stdout}


# in-process -----------------------------------------------------------------------------------------------------
def in_process(model, requests_model, bodies: list, reps: int) -> dict:
    """The request path's own work per request without HTTP: decode + encode + predict (1 thread); predict alone
    (one row: LightGBM's single-row fast path); ``Booster.predict`` alone; the former pandas path (DataFrame,
    event-time columns, ``FeatureSpec.encode``, predict)."""
    import pandas as pd

    raw = [json.dumps(b).encode() for b in bodies]
    batch = isinstance(bodies[0], dict) and "flights" in bodies[0]
    decode = requests_model.decode_batch if batch else requests_model.decode_one
    out = {}
    for name in ("numpy_path", "predict_only", "booster_predict", "pandas_path"):
        lat = []
        for i in range(reps):
            b = raw[i % len(raw)]
            if name in ("predict_only", "booster_predict"):
                X = model.encoder.encode(decode(b))
            t = time.perf_counter()
            if name == "numpy_path":
                model.predict_array(model.encoder.encode(decode(b)), 1)
            elif name == "predict_only":
                model.predict_array(X, 1)
            elif name == "booster_predict":  # without the single-row fast path
                model.model.booster.predict(X, num_threads=1)
            else:
                rows = bodies[i % len(bodies)]
                df = pd.DataFrame(rows["flights"] if batch else [rows])
                ts = pd.to_datetime(df["time_hour"], utc=True)
                df["event_hour_utc"], df["event_weekday"] = ts.dt.hour, ts.dt.weekday
                model.predict(df)
            lat.append(time.perf_counter() - t)
        out[name] = {"p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3)}
    return out


def main() -> None:
    from curation import curate_days

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000, help="single-flight requests per server")
    ap.add_argument("--batch-requests", type=int, default=200, help="batch requests")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args()

    from include.mlops.core import frame
    from include.mlops.core.lake import Lake
    from include.mlops.kinds import lightgbm as lgbm
    from include.mlops.serve.request import RequestModel
    from include.mlops.simulate.traffic import requests_for
    from include.mlops.train import features as F
    from include.mlops.train.params import load as load_params

    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    lake = Lake((folder / "lake").as_uri())
    curate_days(lake, "2013-01-01", 31)
    fl, we, _ = frame.load_window(lake, "2013-01-31", 31)
    ts = F.build(fl, we)
    booster = lgbm.train_single(
        ts.part("train"),
        ts.part("validation"),
        ts.spec.columns,
        ts.spec.categorical,
        lgbm.params(load_params()["lgbm"], threads=1),
        200,
    )
    booster.save_model(str(folder / "model.txt"))
    (folder / "spec.json").write_text(json.dumps(ts.spec.to_dict()))
    model = load_model(folder)
    flights = requests_for("2013-02-05") + requests_for("2013-02-06")
    singles = flights[:1000]
    batches = [{"flights": (flights * 2)[i * 97 : i * 97 + args.batch]} for i in range(8)]

    requests_model = RequestModel()
    results: dict = {
        "in_process": {
            "single": in_process(model, requests_model, singles, 2000),
            f"batch_{args.batch}": in_process(model, requests_model, batches, 40),
        }
    }
    print("in-process", json.dumps(results["in_process"]), flush=True)

    bare_port, port = free_port(), free_port()
    bare = start(["_bare", str(bare_port)], bare_port)
    try:
        results["bare"] = run_load(bare_port, "/predict", singles, args.requests, args.concurrency, server=bare)
        results["bare_wrk"] = run_wrk(bare_port, "/predict", singles[0], args.concurrency)
    finally:
        bare.terminate()
        bare.wait(30)
    print("bare", json.dumps(results["bare"]), flush=True)
    service = start(["_serve", str(folder), str(port)], port)
    time.sleep(5)  # start-up work done before the load (the prediction log's writer process imports its libraries)
    try:
        results["single"] = run_load(port, "/predict", singles, args.requests, args.concurrency, TOKEN, service)
        print("single", json.dumps(results["single"]), flush=True)
        results["single_wrk"] = run_wrk(port, "/predict", singles[0], args.concurrency, TOKEN)
        results[f"batch_{args.batch}"] = run_load(
            port, "/predict/batch", batches, args.batch_requests, 1, TOKEN, service
        )
        print(f"batch_{args.batch} (1 client)", json.dumps(results[f"batch_{args.batch}"]), flush=True)
        results[f"batch_{args.batch}_c{args.concurrency}"] = run_load(
            port, "/predict/batch", batches, args.batch_requests, args.concurrency, TOKEN, service
        )
        print(
            f"batch_{args.batch} ({args.concurrency} clients)",
            json.dumps(results[f"batch_{args.batch}_c{args.concurrency}"]),
            flush=True,
        )
    finally:
        service.terminate()
        service.wait(60)
    b, s = results["bare"], results["single"]
    one = results["in_process"][f"batch_{args.batch}"]
    bat = results[f"batch_{args.batch}"]
    results["ratios"] = {
        "single_p99_vs_bare_p99": round(s["p99_ms"] / b["p99_ms"], 2),
        "single_throughput_vs_bare": round(s["requests_per_s"] / b["requests_per_s"], 2),
        f"batch_{args.batch}_http_p50_vs_in_process_predict_p50": round(
            bat["p50_ms"] / one["predict_only"]["p50_ms"], 2
        ),
        f"batch_{args.batch}_flights_per_s": round(bat["requests_per_s"] * args.batch),
        "single_server_cpu_vs_bare": round(s["server_cpu_us_per_request"] / b["server_cpu_us_per_request"], 2),
        f"batch_{args.batch}_c{args.concurrency}_flights_per_s": round(
            results[f"batch_{args.batch}_c{args.concurrency}"]["requests_per_s"] * args.batch
        ),
    }
    print("ratios", json.dumps(results["ratios"]), flush=True)
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "concurrency": args.concurrency,
        "results": results,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_bare":
        serve_bare(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_serve":
        serve_model(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_load":
        port, path, bodies, n, conc = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
        token = sys.argv[7] if len(sys.argv) > 7 else ""
        print(json.dumps(load(int(port), path, bodies, int(n), int(conc), token)))
    else:
        main()
