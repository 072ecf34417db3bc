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

``--shadow`` measures instead the cost of the challenger's shadow on the request path, the service started afresh
for each measurement, alternating (``--rounds`` times each):

- **A**: the champion alone (no challenger, no rollout);
- **B**: the same champion and a challenger (a second model: the same data and rounds, another seed) under a canary
  at the shadow stage (``deployments/rollout.json`` in the service's lake: status ``canary``, share 0.0, read by
  ``rollouts.canary_share`` and ``rollouts.shadowing`` as ``registry_store`` does), so that every flight the
  champion answers is scored again by the challenger, in the service's shadow worker, after the answer is sent.

Five loads on each service: single flights from ``--concurrency`` connections as fast as answered, then paced
(``--paced-single`` a second over 4 connections, under the service's capacity); batches from 1 connection as fast
as answered, then paced (``--paced-batch`` a second); batches from ``--concurrency`` connections. Each waits after
its load until the shadow has scored or dropped every job before the server's CPU is read, so the shadow's work
is counted in the load that caused it. Reported per load: p50/p99, requests/s, server (and log writer) CPU per
request, the shadow's own numbers from ``/metrics`` (jobs, mean time, dropped, how long it lagged behind the
load) and, after the service stopped, the rows of each arm in its prediction log; then B/A per round.

    .venv/bin/python bench/bench_serving.py --shadow [--rounds 2] [--requests 4000] [--batch-requests 40]
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
from collections.abc import Callable
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


def load_model(folder: Path, version: str = "1"):
    import lightgbm as lgb

    from include.mlops.core.frame import FeatureSpec
    from include.mlops.kinds import lightgbm
    from include.mlops.serve.models import ServedModel

    return ServedModel(
        lightgbm.Model(
            lgb.Booster(model_file=str(folder / "model.txt")),
            FeatureSpec.from_dict(json.loads((folder / "spec.json").read_text())),
            version,
        )
    )


def serve_model(folder: Path, port: int, lake_folder: Path | None = None, challenger: bool = False) -> None:
    """The service: champion v1 (``folder``); with ``challenger``, v2 (``folder/challenger``) as the challenger
    alias, whose share and shadow come from the rollout in the service's lake (``lake_folder``) as
    ``app.registry_store`` reads them."""
    from include.mlops.core import rollouts
    from include.mlops.core.lake import Lake
    from include.mlops.serve.app import create_app
    from include.mlops.serve.models import ModelStore, Resolved
    from include.mlops.serve.server import Limits, make_server

    models = {"1": load_model(folder)}
    if challenger:
        models["2"] = load_model(folder / "challenger", "2")
    lake = Lake((lake_folder or folder / "lake").as_uri())
    aliases = {"champion": "1", "challenger": "2" if challenger else None}

    def resolve() -> Resolved:
        rollout = rollouts.current(lake)
        return Resolved(
            aliases,
            rollouts.canary_share(rollout, aliases["challenger"]),
            rollouts.shadowing(rollout, aliases["challenger"]),
        )

    store = ModelStore(resolve, models.__getitem__)
    app = create_app(
        store, lake, refresh_s=3600, flush_rows=5000, flush_s=2, token=TOKEN, freeze_gc=True
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
async def _connection(
    port: int, requests: list[bytes], lat: list[float], statuses: dict[int, int], interval: float = 0.0, lag: float = 0
) -> None:
    """Sends each request once the previous one is answered; with ``interval``, not before ``interval`` seconds
    after the previous one was sent (paced: a load under the service's capacity), the first after ``lag``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    due = time.perf_counter() + lag
    try:
        for req in requests:
            if interval:
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                due = max(due, time.perf_counter() - interval) + interval  # late: no catching up in a burst
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


def load(port: int, path: str, bodies_file: str, n: int, concurrency: int, token: str, per_s: float = 0.0) -> dict:
    """``n`` requests over ``concurrency`` keep-alive connections, each sending its next request as soon as the
    previous one is answered (with ``per_s``: at most ``per_s`` requests a second in all, spread evenly over the
    connections); the bodies are cycled from ``bodies_file`` (a JSON list)."""
    interval = concurrency / per_s if per_s else 0.0
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
        await asyncio.gather(
            *(_connection(port, p, lat, statuses, interval, c * interval / concurrency) for c, p in enumerate(parts))
        )
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
    settle: Callable[[dict], None] | None = None,
    per_s: float = 0.0,
) -> dict:
    """The load from its own process (``per_s``: paced, see ``load``); ``settle(result)``, when given, runs after
    it and before the server's CPU is read (the shadow's work left in its queue when the load ends belongs to this
    load)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(bodies, f)
    cpu0 = cpu_seconds(server.pid) if server and Path("/proc").exists() else None
    kids0 = children_cpu_seconds(server.pid) if cpu0 is not None else None
    out = subprocess.run(
        [sys.executable, __file__, "_load", str(port), path, f.name, str(n), str(concurrency), token, str(per_s)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    os.unlink(f.name)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if settle is not None:
        settle(result)
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
VARIANTS = ("numpy_path", "predict_only", "booster_predict", "pandas_path")


def in_process(model, requests_model, bodies: list, reps: int, variants: tuple[str, ...] = VARIANTS) -> dict:
    """The request path's own work per request without HTTP: decode + encode + predict (1 thread); predict alone
    (one row: LightGBM's single-row fast path); ``Booster.predict`` alone; the former pandas path (DataFrame,
    event-time columns, ``FeatureSpec.encode``, predict)."""
    import pandas as pd

    raw = [json.dumps(b).encode() for b in bodies]
    batch = isinstance(bodies[0], dict) and "flights" in bodies[0]
    decode = requests_model.decode_batch if batch else requests_model.decode_one
    out = {}
    for name in variants:
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


# the shadow's cost (--shadow) ------------------------------------------------------------------------------------
SHADOW_ROLLOUT = {  # a canary of v2 at a shadow stage (share 0.0): the fields the service reads, and a few more
    "version": "2",
    "champion": "1",
    "started_at": "2026-12-07T00:00:00+00:00",
    "status": "canary",
    "from_date": "2013-02-05",
    "owner": "bench_serving",
    "canary_share": 0.0,
}


def scrape(port: int) -> dict[str, float]:
    """The service's shadow counters from /metrics, summed over versions (the histogram's buckets by ``le``), and
    the prediction log's lost rows."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(("mlops_serve_shadow", "mlops_serve_prediction_log_lost")):
                key = s.name + (f"{{le={s.labels['le']}}}" if "le" in s.labels else "")
                out[key] = out.get(key, 0.0) + s.value
    return out


def shadow_delta(before: dict[str, float], after: dict[str, float]) -> dict:
    """One phase's shadow: jobs scored, their mean time, a bucket bound on their p50 and p99 (the histogram's
    buckets: ``serve.metrics.BUCKETS``), jobs dropped."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    jobs = int(d.get("mlops_serve_shadow_duration_seconds_count", 0))
    buckets = sorted(
        (float(k.split("le=")[1][:-1]), v)
        for k, v in d.items()
        if k.startswith("mlops_serve_shadow_duration_seconds_bucket")
    )

    def bound(q: float) -> float | None:
        return next((round(le * 1000, 1) for le, n in buckets if jobs and n >= q * jobs), None)

    return {
        "jobs": jobs,
        "mean_ms": round(d.get("mlops_serve_shadow_duration_seconds_sum", 0.0) / jobs * 1000, 3) if jobs else None,
        "p50_ms_at_most": bound(0.5),
        "p99_ms_at_most": bound(0.99),
        "dropped": int(d.get("mlops_serve_shadow_dropped_total", 0)),
        "log_rows_lost": int(d.get("mlops_serve_prediction_log_lost_rows_total", 0)),
    }


def logged_rows(lake_folder: Path) -> dict[str, int]:
    """Rows in the service's prediction log, by arm (every row written, not one per flight)."""
    from include.mlops.core import layout, predictions
    from include.mlops.core.lake import Lake

    lake, counts = Lake(lake_folder.as_uri()), {}
    for d in predictions.prediction_dates(lake):
        folder = layout.predictions(d)
        for f in lake.ls(folder):
            for arm, n in lake.read_parquet(folder, f)["arm"].astype(str).value_counts().items():
                counts[arm] = counts.get(arm, 0) + int(n)
    return counts


def measure_service(folder: Path, run: str, challenger: bool, args, singles: list, batches: list) -> dict:
    """One service, started afresh with a prediction log of its own: the five loads, each followed by a wait
    until the shadow has taken up every job it was given (scored or dropped), then the service stopped (its
    shadow and log closed) and its log counted."""
    from include.mlops.core import layout
    from include.mlops.core.lake import Lake

    lake_folder = folder / f"serve-{run}"
    if challenger:
        Lake(lake_folder.as_uri()).write_json(SHADOW_ROLLOUT, *layout.rollout())
    port = free_port()
    service = start(["_serve", str(folder), str(port), str(lake_folder), "challenger" if challenger else ""], port)
    time.sleep(5)  # start-up work done before the load (the prediction log's writer process imports its libraries)
    import httpx

    out: dict = {"versions": httpx.get(f"http://127.0.0.1:{port}/versions", timeout=10).json()}
    assert out["versions"]["shadow"] is challenger, out["versions"]
    drained = {"jobs": 0}  # every request sent so far (warm-up included): one shadow job each in B

    def settle(result: dict) -> None:
        """Wait until the shadow has scored or dropped every job so far (at most 300 s), and note how long."""
        drained["jobs"] += result["sent_with_warm_up"] if challenger else 0
        t = time.perf_counter()
        while True:
            now = scrape(port)
            done = now.get("mlops_serve_shadow_duration_seconds_count", 0) + now.get(
                "mlops_serve_shadow_dropped_total", 0
            )
            if done >= drained["jobs"] or time.perf_counter() - t > 300:
                break
            time.sleep(0.05)
        drained["s"], drained["after"] = round(time.perf_counter() - t, 2), now

    b, c = args.batch, args.concurrency
    phases = [  # name, route, bodies, requests, connections, flights per request, requests a second (0: flat out)
        ("single", "/predict", singles, args.requests, c, 1, 0),
        (f"single_paced_{args.paced_single}", "/predict", singles, args.requests // 2, 4, 1, args.paced_single),
        (f"batch_{b}", "/predict/batch", batches, args.batch_requests, 1, b, 0),
        (
            f"batch_{b}_paced_{args.paced_batch:g}",
            "/predict/batch",
            batches,
            args.batch_requests,
            1,
            b,
            args.paced_batch,
        ),
        (f"batch_{b}_c{c}", "/predict/batch", batches, args.batch_requests, c, b, 0),
    ]
    out["phases"], expected_shadow_rows = [p[0] for p in phases], 0
    try:
        for name, path, bodies, n, conc, flights, per_s in phases:
            before = scrape(port)
            result = run_load(port, path, bodies, n, conc, TOKEN, service, settle, per_s)
            result["flights_per_request"] = flights
            result["shadow"] = shadow_delta(before, drained["after"]) | {"drain_s": drained["s"]}
            expected_shadow_rows += result["shadow"]["jobs"] * flights
            out[name] = result
            print(run, name, json.dumps(result), flush=True)
    finally:
        service.terminate()
        service.wait(120)
    out["logged_rows"] = logged_rows(lake_folder)
    out["expected_shadow_rows"] = expected_shadow_rows
    print(run, "logged rows by arm", out["logged_rows"], "shadow rows expected", expected_shadow_rows, flush=True)
    return out


def shadow_ratios(a: dict, b: dict, phases: list[str]) -> dict:
    """B over A, phase by phase: p50, p99, requests/s, server CPU per request and with the log writer's."""

    def cpu(r: dict) -> int:
        return r["server_cpu_us_per_request"] + r["writer_cpu_us_per_request"]

    return {
        name: {
            "p50": round(b[name]["p50_ms"] / a[name]["p50_ms"], 2),
            "p99": round(b[name]["p99_ms"] / a[name]["p99_ms"], 2),
            "requests_per_s": round(b[name]["requests_per_s"] / a[name]["requests_per_s"], 2),
            "server_cpu_per_request": round(
                b[name]["server_cpu_us_per_request"] / a[name]["server_cpu_us_per_request"], 2
            ),
            "server_and_writer_cpu_per_request": round(cpu(b[name]) / cpu(a[name]), 2),
        }
        for name in phases
    }


def shadow_ab(folder: Path, args, singles: list, batches: list) -> dict:
    """A (the champion alone) and B (the champion, the challenger in the shadow), alternated ``args.rounds``
    times, each on a fresh service; B/A per round."""
    results: dict = {"runs": {}, "ratios": {}}
    for i in range(1, args.rounds + 1):
        for run, challenger in ((f"A{i}", False), (f"B{i}", True)):
            results["runs"][run] = measure_service(folder, run, challenger, args, singles, batches)
            results["runs"][run]["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        a, b = results["runs"][f"A{i}"], results["runs"][f"B{i}"]
        results["ratios"][str(i)] = shadow_ratios(a, b, a["phases"])
        print(f"B{i}/A{i}", json.dumps(results["ratios"][str(i)]), flush=True)
    return results


def train_model(ts, folder: Path, seed: int | None = None) -> None:
    """200 rounds on the window, saved with its spec in ``folder`` (``seed``: LightGBM's, for a second model)."""
    from include.mlops.kinds import lightgbm as lgbm
    from include.mlops.train.params import load as load_params

    p = lgbm.params(load_params()["lgbm"], threads=1)
    if seed is not None:
        p["seed"] = seed
    booster = lgbm.train_single(ts.part("train"), ts.part("validation"), ts.spec.columns, ts.spec.categorical, p, 200)
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / "model.txt"))
    (folder / "spec.json").write_text(json.dumps(ts.spec.to_dict()))


def main() -> None:
    from curation import curate_days

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000, help="single-flight requests per server")
    ap.add_argument("--batch-requests", type=int, default=200, help="batch requests")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--json")
    ap.add_argument("--shadow", action="store_true", help="A/B: the champion alone, then a challenger in the shadow")
    ap.add_argument("--rounds", type=int, default=2, help="with --shadow: A/B pairs")
    ap.add_argument("--paced-single", type=int, default=500, help="with --shadow: single flights a second, paced")
    ap.add_argument("--paced-batch", type=float, default=5, help="with --shadow: batches a second, paced")
    args = ap.parse_args()

    from include.mlops.core import frame
    from include.mlops.core.lake import Lake
    from include.mlops.serve.request import RequestModel
    from include.mlops.simulate.traffic import requests_for
    from include.mlops.train import features as F

    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    lake = Lake((folder / "lake").as_uri())
    curate_days(lake, "2013-01-01", 31)
    fl, we, _ = frame.load_window(lake, "2013-01-31", 31)
    ts = F.build(fl, we)
    train_model(ts, folder)
    model = load_model(folder)
    flights = requests_for("2013-02-05") + requests_for("2013-02-06")
    singles = flights[:1000]
    batches = [{"flights": (flights * 2)[i * 97 : i * 97 + args.batch]} for i in range(8)]

    requests_model = RequestModel()
    if args.shadow:
        train_model(ts, folder / "challenger", seed=8)  # the champion: seed 7 (FIXED_PARAMS)
        challenger = load_model(folder / "challenger", "2")
        X = model.encoder.encode(requests_model.decode_batch(json.dumps(batches[0]).encode()))
        fast = ("numpy_path", "predict_only")
        results = {
            "in_process": {
                arm: {
                    "single": in_process(m, requests_model, singles, 2000, fast),
                    f"batch_{args.batch}": in_process(m, requests_model, batches, 40, fast),
                }
                for arm, m in (("champion", model), ("challenger", challenger))
            },
            "challenger_mean_abs_score_difference": float(
                abs(model.predict_array(X) - challenger.predict_array(X)).mean()
            ),
        }
        print("in-process", json.dumps(results), flush=True)
        results |= shadow_ab(folder, args, singles, batches)
        write_json(args, results)
        shutil.rmtree(folder, ignore_errors=True)
        return
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
    write_json(args, results)
    shutil.rmtree(folder, ignore_errors=True)


def write_json(args, results: dict) -> None:
    if args.json:
        out = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "concurrency": args.concurrency,
            "results": results,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_bare":
        serve_bare(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_serve":
        lake_folder = Path(sys.argv[4]) if len(sys.argv) > 4 else None
        serve_model(Path(sys.argv[2]), int(sys.argv[3]), lake_folder, len(sys.argv) > 5 and sys.argv[5] == "challenger")
    elif len(sys.argv) > 1 and sys.argv[1] == "_load":
        port, path, bodies, n, conc = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
        token = sys.argv[7] if len(sys.argv) > 7 else ""
        per_s = float(sys.argv[8]) if len(sys.argv) > 8 else 0.0
        print(json.dumps(load(int(port), path, bodies, int(n), int(conc), token, per_s)))
    else:
        main()
