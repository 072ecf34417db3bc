"""The prediction API (FastAPI): ``POST /predict`` for one flight, ``POST /predict/batch`` for
``{"flights": [...]}``, ``GET /health``, ``GET /versions``, ``GET /metrics`` (Prometheus: ``serve.metrics``).

Serves the registry's ``champion`` and, during a rollout, its ``challenger``: each flight is routed by a stable
hash of its key, with the canary share from ``deployments/rollout.json`` in the lake (written by
``deploy_model``); a challenger alias without a running canary of that version gets no traffic. Aliases are
re-read every ``MLOPS_SERVE_REFRESH_S`` seconds.
Every prediction is logged to ``predictions/date=<flight date>/`` in the lake, in batches, off the request path
(``PredictionLog``: bounded in memory, spilled to local disk while the lake refuses writes, written once it
takes them; the frames and the Parquet are made by a child process, ``serve.logwriter``, out of this interpreter).

The request model is derived from the data sets' declaration (``serve.request``), decoded strictly with msgspec
and encoded straight into the model's matrix (no pandas on the request path). A body over
``MLOPS_SERVE_MAX_BODY_BYTES`` gets 413 before it is parsed, a batch over ``MLOPS_SERVE_MAX_BATCH`` flights 422;
with ``MLOPS_SERVE_TOKEN`` (or ``MLOPS_SERVE_TOKEN_FILE``) set, /predict requires ``Authorization: Bearer
<token>`` (compared in constant time); /health, /versions and /metrics stay open (a gateway in front should keep
/metrics to the scraper). The scheme is case-insensitive; a token under 32 characters stops the start.
``main`` runs it under ``serve.server``: bounded connections, header/body/idle timeouts, no query string in the
access log.

    python -m include.mlops.serve.app            # or `make serve`; port MLOPS_SERVE_PORT (8000)
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ..core.config import serve_token as token_from_env
from ..core.config import serve_token_problem
from ..core.lake import Lake
from ..train.features import FeatureSpec
from . import logwriter
from .metrics import ServiceMetrics, route_of
from .models import ModelStore, ServedModel
from .request import MAX_MESSAGE, Decoded, RequestError, RequestModel
from .server import Limits, make_server, open_file_limit

log = logging.getLogger("mlops.serving")


class PredictionLog:
    """Writes prediction records to the lake in batches, without losing one and within a bounded memory, from a
    child process (``serve.logwriter``): building frames and writing Parquet never hold the requests' interpreter.

    A request hands over its decoded flights and answers in one piece (``put_request``); a feeder thread sends
    what is there to the writer, one msgpack frame per round, and keeps each frame until the writer says it is
    written or spilled. At most ``max_rows`` rows wait (here or in the writer): beyond that a request's records
    go straight to the spill folder (``spill_dir``, local disk under MLOPS_HOME, 0700, its files 0600). When the
    lake refuses a flight date's write, the writer spills that date's rows and, until a retry of that date
    succeeds (after ``retry_s``, then with backoff), that date's later rows without trying the lake; the other
    dates keep going to the lake. It writes the spilled files of the dates due to the lake and removes them.
    Spilled files left by an earlier process are written the same way. When the writer dies, the frames it had not finished are spilled from here
    (counted in ``writer_crashes``, logged) and a new writer is started. ``close`` has the writer write what is
    left, or spill it when the lake still refuses; a writer stuck longer than the timeout is stopped and what it
    held is spilled from here. The writer reads its frames from a pipe: when the service dies, it writes what it
    holds and exits."""

    def __init__(
        self,
        lake: Lake,
        flush_rows: int = 500,
        flush_s: float = 5.0,
        max_rows: int = 100_000,
        spill_dir: Path | None = None,
        retry_s: float = 2.0,
    ):
        self.lake, self.flush_rows, self.flush_s, self.max_rows = lake, flush_rows, flush_s, max_rows
        self.spill_dir = Path(spill_dir) if spill_dir else Path(tempfile.mkdtemp(prefix="prediction-spill-"))
        self.retry_s = retry_s
        self._local = logwriter.Writer(lake, self.spill_dir, retry_s)  # spills from here: overflow, a dead writer
        self._items: list = []  # handed over by requests, not yet sent to the writer
        self._waiting = 0  # their rows
        self._wake = threading.Event()
        self.peak_pending = 0
        self.writer_crashes = 0
        self._queued = 0  # rows in memory here or in the writer, not yet written or spilled
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._encoder = msgspec.msgpack.Encoder()
        self._seq = 0
        self._unacked: dict[int, tuple[bytes, int]] = {}  # frames sent, not yet done: payload, rows
        self._parts: set = set()  # (frame, flight date) done of frames not done whole
        self._counters = [0, 0, 0, 0]  # the writers' written, spilled_total, lake_failures, lost: those gone ...
        self._child = [0, 0, 0, 0]  # ... and the current one's
        self._refusing: list[str] = []  # the flight dates the lake refuses now (the writer says)
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._start_at = 0.0
        self._start_writer()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # state ---------------------------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Rows in memory, waiting to be written."""
        return self._queued

    @property
    def spilled(self) -> int:
        """Rows in the spill folder, waiting for the lake."""
        files = self._local.spill_files() + list(self.spill_dir.glob(".spill-*.claim-*"))  # claimed: being written
        return sum(int(f.name.split("-rows", 1)[1].split(".", 1)[0]) for f in files)

    def _counter(self, i: int) -> int:
        return self._counters[i] + self._child[i]

    @property
    def written(self) -> int:
        return self._counter(0)

    @property
    def spilled_total(self) -> int:
        return self._counter(1) + self._local.spilled_total

    @property
    def lake_failures(self) -> int:
        return self._counter(2)

    @property
    def lost(self) -> int:
        return self._counter(3) + self._local.lost

    @property
    def refusing(self) -> list[str]:
        """The flight dates whose last write the lake refused (spilled, retried with backoff)."""
        return self._refusing

    # intake (request threads) ----------------------------------------------------------------------------------------
    def put(self, records: list[dict[str, Any]]) -> None:
        self._enqueue(records, len(records))

    def put_request(
        self,
        request_id: str,
        now: str,
        decoded: Decoded,
        scores,
        versions: list[str],
        routes: list[str],
        fields: list[str],
    ) -> None:
        """One request's flights and answers; ``fields``: the request fields the log keeps."""
        self._enqueue((request_id, now, decoded, scores, versions, routes, fields), len(decoded.keys))

    def _enqueue(self, item, n: int) -> None:
        with self._lock:  # no thread wakes up per request: the feeder takes what is there when it comes round
            room = self._queued + n <= self.max_rows
            if room:
                self._queued += n
                self.peak_pending = max(self.peak_pending, self._queued)
                self._items.append(item)
                self._waiting += n
                if self._waiting >= self.flush_rows:
                    self._wake.set()
        if not room:  # memory is full: straight to local disk, never dropped, never blocking on the lake
            self._spill_here(
                lambda: logwriter.records(self._decode(logwriter.encode_frame(self._encoder, 0, [item]))), n
            )

    def _spill_here(self, rows, n: int) -> None:
        try:
            self._local.spill(rows())
        except OSError:  # the lake is behind and the local disk refuses too: the last resort, counted
            self._local.lost += n
            log.exception("could not spill %d prediction record(s): lost (%d so far)", n, self.lost)

    @staticmethod
    def _decode(payload: bytes) -> list:
        return logwriter.decode_frame(payload)

    # the writer process ------------------------------------------------------------------------------------------
    def _start_writer(self) -> None:
        root = Path(__file__).resolve().parents[len(__package__.split("."))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        config = {
            "lake": self.lake.url,
            "spill_dir": str(self.spill_dir),
            "retry_s": self.retry_s,
            "flush_rows": self.flush_rows,
            "flush_s": self.flush_s,
        }
        self._start_at = time.monotonic() + self.retry_s  # a writer that keeps dying: a new one at most this often
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"{__package__}.logwriter", json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
        except OSError:
            log.exception("could not start the prediction log's writer; records wait in memory (then spill)")
            return
        self._child = [0, 0, 0, 0]
        self._proc = proc
        self._reader = threading.Thread(target=self._read, args=(proc,), name="prediction-log-acks", daemon=True)
        self._reader.start()

    def _read(self, proc: subprocess.Popen) -> None:
        """The writer's acknowledgements; at their end (the writer exited), what it did not finish is spilled."""
        while (data := logwriter.receive(proc.stdout)) is not None:
            message = msgspec.msgpack.decode(data)
            with self._lock:
                self._child, self._refusing = message["c"], message.get("r", [])
                self._parts.update((s, d) for s, d in message["parts"])
                for seq in message["seqs"]:
                    _, n = self._unacked.pop(seq)
                    self._queued -= n
                    self._parts = {p for p in self._parts if p[0] != seq}
        code = proc.wait()
        with self._lock:
            unacked, parts = self._unacked, self._parts
            self._unacked, self._parts = {}, set()
            self._counters = [a + b for a, b in zip(self._counters, self._child)]
            self._child, self._refusing = [0, 0, 0, 0], []
            self._proc = None
        n = sum(rows for _, rows in unacked.values())
        if not unacked and code == 0 and self._stop.is_set():
            return
        if not self._stop.is_set():
            self.writer_crashes += 1
        left = [
            r
            for seq, (payload, _) in sorted(unacked.items())
            for r in logwriter.records(self._decode(payload))
            if (seq, r["flight_date"]) not in parts
        ]
        log.error(
            "the prediction log's writer exited (code %s) with %d record(s) not written: spilling %d from the "
            "service (%d part(s) it had finished)",
            code,
            n,
            len(left),
            n - len(left),
        )
        self._spill_here(lambda: left, len(left))
        with self._lock:
            self._queued -= n
        self._wake.set()

    def _send(self, proc: subprocess.Popen, items: list, n: int) -> None:
        self._seq += 1
        payload = logwriter.encode_frame(self._encoder, self._seq, items)
        with self._lock:
            if self._proc is not proc:  # the writer is gone meanwhile: for the next one
                self._items[:0] = items
                self._waiting += n
                return
            self._unacked[self._seq] = (payload, n)  # from here on, the reader answers for it
        try:
            proc.stdin.write(logwriter.HEADER.pack(len(payload)) + payload)
            proc.stdin.flush()
        except (OSError, ValueError):  # the writer is gone: its reader spills what it did not finish
            pass

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self._wake.wait(min(0.2, self.flush_s))
            self._wake.clear()
            if self._proc is None and not stopping and time.monotonic() >= self._start_at:
                self._start_writer()
            proc = self._proc
            if proc is not None:
                items, n = self._take()
                if items:
                    self._send(proc, items, n)
            if stopping:
                break
        proc = self._proc
        if proc is not None:
            try:
                proc.stdin.close()  # the end of input: the writer writes what it holds and exits
            except OSError:
                pass

    def _take(self) -> tuple[list, int]:
        with self._lock:
            items, n = self._items, self._waiting
            self._items, self._waiting = [], 0
        return items, n

    def close(self, timeout: float = 30) -> None:
        """Write what is queued (spill it when the lake refuses), then stop. When the writer is stuck longer than
        ``timeout`` (a lake that hangs), it is stopped and what it had not finished is spilled from here."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        proc, reader = self._proc, self._reader
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the prediction log's writer did not finish in %.0f s: stopping it", timeout)
                proc.kill()
            if reader is not None:
                reader.join(timeout)
        items, n = self._take()  # never sent (no writer): spilled from here
        if items:
            self._spill_here(
                lambda: [
                    r
                    for i in items
                    for r in logwriter.records(self._decode(logwriter.encode_frame(self._encoder, 0, [i])))
                ],
                n,
            )
            with self._lock:
                self._queued -= n
            log.warning("%d prediction record(s) never reached the writer: spilled to %s", n, self.spill_dir)


def log_reasons(plog: PredictionLog | None) -> list[str]:
    """Why the prediction log is behind, for /health (empty: it keeps up): flight dates the lake refuses, records
    waiting in the spill folder."""
    if plog is None:
        return []
    reasons = []
    spilled, refusing = plog.spilled, plog.refusing
    if refusing:
        reasons.append(
            f"the lake refuses prediction records of flight date(s) {', '.join(refusing[:10])}"
            + (f" and {len(refusing) - 10} more" if len(refusing) > 10 else "")
            + f": spilled, retried with backoff ({plog.lake_failures} refused write(s) so far)"
        )
    if spilled:
        reasons.append(f"{spilled} prediction record(s) in the spill folder, waiting for the lake")
    return reasons


def registry_store(lake: Lake) -> ModelStore:
    from ..core import registry, rollouts

    def resolve():
        aliases = {a: (registry.alias_version(a) or {}).get("version") for a in ("champion", "challenger")}
        return aliases, rollouts.canary_share(rollouts.current(lake), aliases["challenger"])

    def load(version: str) -> ServedModel:
        booster, spec = registry.load_version(version)
        return ServedModel(
            version,
            booster,
            FeatureSpec.from_dict({k: spec[k] for k in ("numeric", "categorical", "categories", "label")}),
        )

    return ModelStore(resolve, load)


DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # about 20,000 flights with their weather
DEFAULT_MAX_BATCH = 10_000
DEFAULT_LOG_MAX_ROWS = 100_000  # prediction records held in memory at most (then spilled to disk)
INLINE_BYTES = 32 * 1024  # bodies up to this size are answered on the event loop itself
RELEASE_BYTES = 1024 * 1024  # after a body this large, freed memory is given back to the system


def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Give the heap memory a large batch freed back to the system. A batch is handled in a worker thread, whose
    malloc arena keeps the pages of its freed arrays and strings (tens of MB a 10,000-flight batch) for the next
    allocation in that thread; with several threads and arenas the service stays near its peak for good
    (``bench/bench_serving_memory.py``). ``malloc_trim(0)`` returns the free pages of every arena; a no-op where
    the C library has none."""
    if _TRIM is not None:
        _TRIM(0)


def default_spill_dir(lake: Lake) -> Path:
    """Where the prediction log spills while the lake refuses writes: local disk under MLOPS_HOME, one folder per
    lake (records spilled for one lake are never written to another)."""
    from ..core.config import Settings

    key = hashlib.sha256(lake.url.encode()).hexdigest()[:16]
    return Settings.from_env().home / "serve" / "prediction-spill" / key


def create_app(
    store: ModelStore,
    lake: Lake,
    refresh_s: float = 10.0,
    flush_rows: int = 500,
    flush_s: float = 5.0,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    threads: int = 1,
    settings=None,
    log_max_rows: int = DEFAULT_LOG_MAX_ROWS,
    spill_dir: Path | None = None,
    log_retry_s: float = 2.0,
    freeze_gc: bool = False,
):
    """The service. ``token``: the bearer token /predict requires (None: open); ``max_body_bytes``: larger
    bodies get 413 before they are parsed; ``max_batch``: the most flights in one batch; ``threads``: LightGBM
    threads per prediction (1 fits concurrent requests on few cores)."""
    import anyio
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST

    state: dict[str, Any] = {"refresh": {"ok": None, "error": None, "failures": 0, "last_ok": None}}
    if token and (problem := serve_token_problem(token, "token")):
        raise ValueError(problem)
    requests = RequestModel(settings, max_batch=max_batch)
    expected = token.encode() if token else None
    metrics = ServiceMetrics(lambda: (state.get("log"), store.arms, state["refresh"]["ok"]))

    def refresh() -> None:
        """Re-read the aliases and the rollout. When that fails (registry or lake unreachable), what is loaded
        keeps serving unchanged (an error is never read as "no champion") and /health says so."""
        r = state["refresh"]
        try:
            store.refresh()
        except Exception as exc:  # a registry hiccup must not stop serving what is loaded
            r.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:300]}", failures=r["failures"] + 1)
            metrics.refresh_failed()
            log.exception("model refresh failed; still serving %s", store.arms.describe())
        else:
            r.update(ok=True, error=None, last_ok=dt.datetime.now(dt.UTC).isoformat())

    def refresher(stop: threading.Event) -> None:
        while not stop.wait(refresh_s):
            refresh()

    @asynccontextmanager
    async def lifespan(app):
        refresh()
        if freeze_gc:  # what start-up made (modules, models) is never garbage: keep the collector off it
            gc.collect()
            gc.freeze()
        stop = threading.Event()
        t = threading.Thread(target=refresher, args=(stop,), name="model-refresh", daemon=True)
        t.start()
        state["log"] = PredictionLog(
            lake,
            flush_rows,
            flush_s,
            max_rows=log_max_rows,
            spill_dir=spill_dir or default_spill_dir(lake),
            retry_s=log_retry_s,
        )
        yield
        stop.set()
        state["log"].close()

    app = FastAPI(title="Flight delay prediction", version="1", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def small_422(request, exc):  # FastAPI's own validation (query, path): the field, never the input
        return JSONResponse(
            {
                "detail": [
                    {"loc": list(e.get("loc", ())), "msg": str(e.get("msg"))[:MAX_MESSAGE], "type": e.get("type")}
                    for e in exc.errors()[:20]
                ]
            },
            status_code=422,
        )

    @app.get("/health")
    def health() -> dict[str, Any]:
        arms = store.arms
        serving = bool(arms.champion or arms.challenger)
        status = "no_model" if not serving else ("ok" if state["refresh"]["ok"] is not False else "stale")
        reasons = log_reasons(state.get("log"))
        if status == "ok" and reasons:
            status = "degraded"
        if status == "stale":
            reasons.insert(0, f"the last refresh of the aliases failed: {state['refresh']['error']}")
        elif status == "no_model":
            reasons.insert(0, "no model version is deployed yet")
        return {
            "status": status,
            "reasons": reasons,
            **arms.describe(),
            "refresh": dict(state["refresh"]),
            "logged": state["log"].written if "log" in state else 0,
            "pending_log": state["log"].pending if "log" in state else 0,
            "spilled_log": state["log"].spilled if "log" in state else 0,
            "log_peak_pending": state["log"].peak_pending if "log" in state else 0,
            "log_lake_failures": state["log"].lake_failures if "log" in state else 0,
            "log_refused_dates": list(state["log"].refusing) if "log" in state else [],
            "log_lost": state["log"].lost if "log" in state else 0,
            "log_writer_crashes": state["log"].writer_crashes if "log" in state else 0,
        }

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        return store.arms.describe()

    @app.get("/metrics", response_class=Response)
    def prometheus_metrics():
        """The service's telemetry in Prometheus' text format (``serve.metrics``)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def authorised(given: bytes) -> None:
        """``Authorization: Bearer <token>``, the scheme in any case (RFC 7235), the token compared in constant
        time."""
        scheme, _, credentials = given.partition(b" ")
        if expected is not None and not (
            scheme.lower() == b"bearer" and hmac.compare_digest(credentials.lstrip(b" "), expected)
        ):
            raise RequestError(
                401,
                ["header", "authorization"],
                "a bearer token is required (Authorization: Bearer <MLOPS_SERVE_TOKEN>)",
                "unauthorised",
            )

    async def read_body(headers: dict[bytes, bytes], receive) -> bytes:
        """The body, refused with 413 once it is larger than allowed: by its Content-Length before a byte is
        read, else (chunked) as soon as the bytes streamed pass the limit."""
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                raise RequestError(400, ["header", "content-length"], "Content-Length is not a number", "header")
            if int(length) > max_body_bytes:
                raise RequestError(
                    413,
                    ["body"],
                    f"the body is {int(length)} bytes; at most {max_body_bytes} "
                    "(MLOPS_SERVE_MAX_BODY_BYTES): split the batch",
                    "too_large",
                )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body_bytes:
                raise RequestError(
                    413,
                    ["body"],
                    f"the body is over {max_body_bytes} bytes (MLOPS_SERVE_MAX_BODY_BYTES): split the batch",
                    "too_large",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def answer(body: bytes, batch: bool) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        """The answer's body, and the (arm, version) pairs that scored its flights."""
        decoded = requests.decode_batch(body) if batch else requests.decode_one(body)
        arms = store.arms  # one snapshot for the whole request
        if arms.champion is None and arms.challenger is None:
            raise RequestError(503, [], "no model version is deployed yet", "no_model")
        routes = arms.route(decoded.keys)
        n = len(decoded.keys)
        scores = np.empty(n)
        versions = [""] * n
        served = []
        for arm_name in ("champion", "challenger"):
            model = getattr(arms, arm_name)
            if model is None:
                continue
            idx = [i for i, r in enumerate(routes) if r == arm_name]
            if not idx:
                continue
            part = decoded if len(idx) == n else decoded.subset(idx)
            scores[idx] = model.predict_array(model.encoder.encode(part), threads)
            for i in idx:
                versions[i] = model.version
            metrics.predicted(arm_name, model.version, len(idx))
            served.append((arm_name, model.version))
        request_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC).isoformat()
        state["log"].put_request(request_id, now, decoded, scores, versions, routes, requests.logged)
        content = msgspec.json.encode(
            {
                "request_id": request_id,
                "predictions": [
                    {"flight_key": k, "delay_probability": s, "version": v, "arm": r}
                    for k, s, v, r in zip(decoded.keys, scores.tolist(), versions, routes)
                ],
            }
        )
        return content, tuple(served)

    JSON = (b"content-type", b"application/json")

    async def predict_asgi(scope, receive, send, batch: bool) -> None:
        """``POST /predict`` and ``POST /predict/batch`` as plain ASGI, ahead of FastAPI's routing: the token and
        the body's size are checked before the body is read, the body is decoded once by msgspec."""
        started = time.perf_counter()
        headers = dict(scope["headers"])
        status, extra, served = 200, [], ()
        try:
            if scope["method"] != "POST":
                raise RequestError(405, [], "Method Not Allowed", "method")
            authorised(headers.get(b"authorization", b""))
            body = await read_body(headers, receive)
            if len(body) <= INLINE_BYTES:
                content, served = answer(body, batch)
            else:  # a large batch: off the event loop, so /health and small requests keep answering
                content, served = await anyio.to_thread.run_sync(answer, body, batch)
                if len(body) >= RELEASE_BYTES:
                    del body
                    await anyio.to_thread.run_sync(release_memory)
        except ClientGone:
            metrics.observe(scope["path"], 499, time.perf_counter() - started)
            return
        except RequestError as exc:
            status = exc.status
            if status in (413, 422):
                metrics.rejected(scope["path"], status, exc.kind)
            content = msgspec.json.encode({"detail": exc.msg if status in (401, 405, 413, 503) else exc.detail})
            if status == 413:
                extra = [(b"connection", b"close")]
            elif status == 401:
                extra = [(b"www-authenticate", b"Bearer")]
            elif status == 405:
                extra = [(b"allow", b"POST")]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [JSON, (b"content-length", str(len(content)).encode()), *extra],
            }
        )
        await send({"type": "http.response.body", "body": content})
        seconds = time.perf_counter() - started
        metrics.observe(scope["path"], status, seconds)
        if served:
            metrics.served(scope["path"], served, seconds)

    schemas = requests.schema()

    def documented(name: str, summary: str) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "operationId": f"predict_{name.lower()}",
                "security": [{"bearer": []}] if token else [],
                "requestBody": {"required": True, "content": {"application/json": {"schema": schemas[name]}}},
                "responses": {
                    "200": _json("one prediction per flight, in request order", "Predictions"),
                    "400": _json("the Content-Length header is not a number", "Message"),
                    **(
                        {
                            "401": {
                                **_json("no or a wrong bearer token", "Message"),
                                "headers": {"WWW-Authenticate": {"schema": {"type": "string", "enum": ["Bearer"]}}},
                            }
                        }
                        if token
                        else {}
                    ),
                    "413": _json(
                        "the body is larger than MLOPS_SERVE_MAX_BODY_BYTES (the connection is closed)", "Message"
                    ),
                    "422": _json(
                        "what is wrong with the body: the fields (loc) and why, never the input itself", "FieldErrors"
                    ),
                    "503": _json("no model version is deployed yet", "Message"),
                },
            }
        }

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = base_openapi()
            doc["paths"] = {
                "/predict": documented("Flight", "Predict one flight"),
                "/predict/batch": documented("Batch", "Predict a batch of flights"),
                **doc["paths"],
            }
            for path, name in (("/health", "Health"), ("/versions", "Versions")):
                doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = _ref(name)
            doc["paths"]["/metrics"]["get"]["responses"]["200"] = {
                "description": "counters, gauges and histograms in Prometheus' text format (open, like /health: "
                "a gateway in front of the service should keep it to the scraper)",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
            components = doc.setdefault("components", {})
            components.setdefault("schemas", {}).update(schemas["components"])
            components["schemas"].update(RESPONSE_SCHEMAS)
            components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
    return PredictionService(app, {"/predict": False, "/predict/batch": True}, predict_asgi, metrics)


class ClientGone(Exception):
    """The client disconnected before its body was read."""


class PredictionService:
    """The ASGI application: the prediction routes answered directly, everything else (``/health``,
    ``/versions``, ``/docs``, ``/openapi.json``, lifespan) by the FastAPI app, whose attributes it passes on."""

    def __init__(self, app, routes: dict[str, bool], handler, metrics: ServiceMetrics):
        self.app, self._routes, self._handler, self.metrics = app, routes, handler, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        batch = self._routes.get(scope["path"])
        if batch is not None:
            return await self._handler(scope, receive, send, batch)  # counts and times itself
        started, status = time.perf_counter(), [500]

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(route_of(scope["path"]), status[0], time.perf_counter() - started)

    def __getattr__(self, name: str):
        return getattr(self.app, name)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, name: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_COUNT = {"type": "integer", "minimum": 0}
_ARMS = {
    "champion": {**_NULLABLE_STRING, "description": "the champion's version (null: none)"},
    "challenger": {**_NULLABLE_STRING, "description": "the challenger's version while it gets traffic (null: none)"},
    "canary_share": {"type": "number", "minimum": 0, "maximum": 1},
}
# what the service answers, described exactly (additionalProperties: false), so that a contract test can hold the
# service to it (tests/integration/test_serving_contract.py)
RESPONSE_SCHEMAS: dict[str, Any] = {
    "Prediction": {
        "type": "object",
        "required": ["flight_key", "delay_probability", "version", "arm"],
        "additionalProperties": False,
        "properties": {
            "flight_key": {"type": "string", "description": "the flight's date and key columns, /-separated"},
            "delay_probability": {"type": "number", "minimum": 0, "maximum": 1},
            "version": {"type": "string", "description": "the model version that scored it"},
            "arm": {"type": "string", "enum": ["champion", "challenger"]},
        },
    },
    "Predictions": {
        "type": "object",
        "required": ["request_id", "predictions"],
        "additionalProperties": False,
        "properties": {
            "request_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "predictions": {"type": "array", "minItems": 1, "items": _ref("Prediction")},
        },
    },
    "Message": {
        "type": "object",
        "required": ["detail"],
        "additionalProperties": False,
        "properties": {"detail": {"type": "string"}},
    },
    "FieldErrors": {
        "type": "object",
        "required": ["detail"],
        "additionalProperties": False,
        "properties": {
            "detail": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["loc", "msg", "type"],
                    "additionalProperties": False,
                    "properties": {
                        "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                        "msg": {"type": "string", "maxLength": MAX_MESSAGE},
                        "type": {"type": "string"},
                    },
                },
            }
        },
    },
    "Versions": {
        "type": "object",
        "required": list(_ARMS),
        "additionalProperties": False,
        "properties": _ARMS,
    },
    "Health": {
        "type": "object",
        "required": [
            "status",
            "reasons",
            *_ARMS,
            "refresh",
            "logged",
            "pending_log",
            "spilled_log",
            "log_peak_pending",
            "log_lake_failures",
            "log_refused_dates",
            "log_lost",
            "log_writer_crashes",
        ],
        "additionalProperties": False,
        "properties": {
            "status": {
                "type": "string",
                "enum": ["ok", "degraded", "stale", "no_model"],
                "description": "stale: the last refresh of the aliases failed; what is loaded keeps serving. "
                "degraded: serving, but the prediction log is behind (the lake refuses a flight date, records wait "
                "in the spill folder). Answered with 200 whatever the status: the service still answers requests",
            },
            "reasons": {
                "type": "array",
                "items": {"type": "string"},
                "description": "why the status is not ok, one sentence each (empty when ok)",
            },
            **_ARMS,
            "refresh": {
                "type": "object",
                "required": ["ok", "error", "failures", "last_ok"],
                "additionalProperties": False,
                "properties": {
                    "ok": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                    "error": _NULLABLE_STRING,
                    "failures": _COUNT,
                    "last_ok": _NULLABLE_STRING,
                },
            },
            "logged": {**_COUNT, "description": "prediction records written to the lake"},
            "pending_log": {**_COUNT, "description": "records waiting in memory"},
            "spilled_log": {**_COUNT, "description": "records in the spill folder, waiting for the lake"},
            "log_peak_pending": _COUNT,
            "log_lake_failures": {**_COUNT, "description": "writes of the log the lake refused"},
            "log_refused_dates": {
                "type": "array",
                "items": {"type": "string"},
                "description": "flight dates whose last write the lake refused: spilled, retried with backoff",
            },
            "log_lost": _COUNT,
            "log_writer_crashes": {
                **_COUNT,
                "description": "times the log's writer process died: what it held was spilled, a new one started",
            },
        },
    },
}


GET_A_MODEL = (
    "get one with `make demo` (the whole lifecycle; DEMO_ARGS=--fast replays six weeks), or run the "
    "DAGs: publish drops (python -m include.mlops.ingest.upstream publish 2013-01-01 --days 14), ingest "
    "them (ingest_flights), then trigger train_model (`make up`, or airflow dags test train_model); the "
    "first version that passes the gate is promoted to champion by deploy_model"
)


def _start_up_check(settings) -> str:
    """Say which registry and lake the service reads; refuse an embedded store that does not exist (a wrong
    MLOPS_HOME would otherwise get a new, empty one and every request a 503). Returns the tracking URI."""
    from ..core import registry

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{settings.home / 'mlflow' / 'mlflow.db'}"
    log.info("registry: %s (model %r, MLOPS_HOME=%s)", uri, registry.model_name(), settings.home)
    log.info("lake: %s (rollouts read from deployments/, predictions logged to predictions/)", settings.lake_url)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        raise SystemExit(
            f"\nERROR: no MLflow store at {uri[len('sqlite:///') :]}: nothing was ever trained with MLOPS_HOME="
            f"{settings.home}.\n  Wrong place? Point MLOPS_HOME (or MLFLOW_TRACKING_URI) at the one your models are "
            f"in, e.g. `make serve MLOPS_HOME=/path/to/.mlops`.\n  No model yet? {GET_A_MODEL[:1].upper() + GET_A_MODEL[1:]}.\n"
            "The service does not create an empty store."
        )
    versions = registry.versions(settings)
    champion = registry.alias_version("champion", settings)
    if not versions:
        log.warning(
            "NO MODEL: the registry %s has no version of %r yet, so /predict answers 503 and /health "
            "'no_model' until a champion is registered (the service checks every MLOPS_SERVE_REFRESH_S); "
            "%s",
            uri,
            registry.model_name(),
            GET_A_MODEL,
        )
    elif not champion:
        log.warning(
            "NO CHAMPION: %d version(s) of %r registered, none is champion yet: deploy_model promotes one "
            "(triggered by a passed gate of train_model, or by hand with the version in its conf)",
            len(versions),
            registry.model_name(),
        )
    else:
        log.info(
            "champion: version %s of %r (%d version(s) registered)",
            champion["version"],
            registry.model_name(),
            len(versions),
        )
    return uri


def _checked_settings() -> tuple[str | None, Limits]:
    """The bearer token and the server's limits from the environment, checked before anything starts: a token
    shorter than the rule (``core.config.serve_token_problem``) or a limit that is not a number is a SystemExit
    naming the variable. Raises the process's open-file limit to its hard limit first."""
    try:
        token = token_from_env()
        where = "MLOPS_SERVE_TOKEN" if os.environ.get("MLOPS_SERVE_TOKEN", "").strip() else "MLOPS_SERVE_TOKEN_FILE"
        if token and (problem := serve_token_problem(token, where)):
            raise ValueError(problem)
        limits = Limits.from_env(fd_limit=open_file_limit(raise_soft=True))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"\nERROR: {exc}\nThe prediction service did not start.") from None
    return token, limits


def main() -> None:
    from ..core.config import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token, limits = _checked_settings()
    settings = Settings.from_env()
    _start_up_check(settings)
    lake = Lake(settings.lake_url)
    store = registry_store(lake)
    env = os.environ.get
    app = create_app(
        store,
        lake,
        refresh_s=float(env("MLOPS_SERVE_REFRESH_S", "10")),
        flush_s=float(env("MLOPS_SERVE_FLUSH_S", "5")),
        token=token,
        max_body_bytes=int(env("MLOPS_SERVE_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES))),
        max_batch=int(env("MLOPS_SERVE_MAX_BATCH", str(DEFAULT_MAX_BATCH))),
        threads=int(env("MLOPS_SERVE_THREADS", "1")),
        log_max_rows=int(env("MLOPS_SERVE_LOG_MAX_ROWS", str(DEFAULT_LOG_MAX_ROWS))),
        spill_dir=Path(env("MLOPS_SERVE_SPILL_DIR")) if env("MLOPS_SERVE_SPILL_DIR") else None,
        freeze_gc=True,
    )
    host, port = env("MLOPS_SERVE_HOST", "127.0.0.1"), int(env("MLOPS_SERVE_PORT", "8000"))
    log.info(
        "/predict %s",
        "requires the bearer token (MLOPS_SERVE_TOKEN)"
        if token
        else "is open: set MLOPS_SERVE_TOKEN (or MLOPS_SERVE_TOKEN_FILE) to require a bearer token",
    )
    log.info(
        "serving on http://%s:%d (POST /predict, POST /predict/batch, GET /health, GET /versions, GET /metrics)",
        host,
        port,
    )
    log.info(
        "connections: at most %d open (MLOPS_SERVE_MAX_CONNECTIONS; open-file limit %d), a request's headers "
        "within %g s (MLOPS_SERVE_HEADER_TIMEOUT_S), idle ones closed after %g s (MLOPS_SERVE_KEEPALIVE_S)",
        limits.max_connections,
        open_file_limit(),
        limits.header_timeout_s,
        limits.keepalive_s,
    )
    server = make_server(app, host, port, limits)
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly and re-raises the signal
        pass
    if not server.started:
        sys.exit(3)  # as uvicorn.run: it did not start (the port taken, the app's start-up failed)


if __name__ == "__main__":
    main()
