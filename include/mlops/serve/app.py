"""The prediction API (FastAPI): ``POST /predict`` for one flight, ``POST /predict/batch`` for
``{"flights": [...]}``, ``GET /health``, ``GET /versions``, ``GET /metrics`` (Prometheus: ``serve.metrics``).

Serves the registry's ``champion`` and, during a rollout, its ``challenger``: each flight is routed by a stable
hash of its key, with the canary share from ``deployments/rollout.json`` in the lake (written by
``deploy_model``); a challenger alias without a running canary of that version gets no traffic. Aliases are
re-read every ``MLOPS_SERVE_REFRESH_S`` seconds.
Every prediction is logged to ``predictions/date=<flight date>/`` in the lake, in batches, off the request path
(``PredictionLog``: bounded in memory, spilled to local disk while the lake refuses writes, written once it
takes them).

The request model is derived from the data sets' declaration (``serve.request``), decoded strictly with msgspec
and encoded straight into the model's matrix (no pandas on the request path). A body over
``MLOPS_SERVE_MAX_BODY_BYTES`` gets 413 before it is parsed, a batch over ``MLOPS_SERVE_MAX_BATCH`` flights 422;
with ``MLOPS_SERVE_TOKEN`` (or ``MLOPS_SERVE_TOKEN_FILE``) set, /predict requires ``Authorization: Bearer
<token>`` (compared in constant time); /health, /versions and /metrics stay open (a gateway in front should keep
/metrics to the scraper).

    python -m include.mlops.serve.app            # or `make serve`; port MLOPS_SERVE_PORT (8000)
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import hmac
import logging
import operator
import os
import tempfile
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from ..core import layout
from ..core.config import serve_token as token_from_env
from ..core.lake import Lake
from ..train.features import FeatureSpec
from .metrics import ServiceMetrics, route_of
from .models import ModelStore, ServedModel
from .request import MAX_MESSAGE, Decoded, RequestError, RequestModel

log = logging.getLogger("mlops.serving")


class PredictionLog:
    """Writes prediction records to the lake in batches from a background thread, without losing one and within
    a bounded memory.

    A request hands over its decoded flights and answers in one piece (``put_request``); the records are built
    here. At most ``max_rows`` rows wait in memory: beyond that a request's records go straight to the spill
    folder (``spill_dir``, local disk under MLOPS_HOME). When the lake refuses a write, that batch is spilled too
    and, until a retry succeeds, later batches are spilled without trying the lake; every ``retry_s`` the oldest
    spilled files are written to the lake and removed. Spilled files left by an earlier process are written the
    same way. ``close`` writes what is left, or spills it when the lake still refuses."""

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
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self.retry_s = retry_s
        self._items: list = []  # handed over by requests, not yet taken by the writer
        self._waiting = 0  # their rows
        self._wake = threading.Event()
        self.written = 0  # rows written to the lake
        self.spilled_total = 0  # rows ever spilled to local disk
        self.lake_failures = 0
        self.peak_pending = 0
        self.lost = 0  # rows neither written nor spilled (the lake and the local disk both refused)
        self._queued = 0  # rows in memory, not yet written or spilled
        self._lock = threading.Lock()
        self._spill_lock = threading.Lock()
        self._retry_at = 0.0  # while the lake refuses: when to try it again
        self._recover_at = 0.0  # when to look at the spill folder again
        self._down = False
        self._stop = threading.Event()
        self._adopt_orphans()
        self._maybe_spilled = bool(self._spill_files())  # left by an earlier process: written first
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
        files = self._spill_files() + list(self.spill_dir.glob(".spill-*.claim-*"))  # claimed: being written
        return sum(int(f.name.split("-rows", 1)[1].split(".", 1)[0]) for f in files)

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
        with self._lock:  # no thread wakes up per request: the writer takes what is there when it comes round
            room = self._queued + n <= self.max_rows
            if room:
                self._queued += n
                self.peak_pending = max(self.peak_pending, self._queued)
                self._items.append(item)
                self._waiting += n
                if self._waiting >= self.flush_rows:
                    self._wake.set()
        if not room:  # memory is full: straight to local disk, never dropped, never blocking on the lake
            try:
                self._spill(self._records(item))
            except OSError:  # the lake is behind and the local disk refuses too: the last resort, counted
                self.lost += n
                log.exception("could not spill %d prediction record(s): lost (%d so far)", n, self.lost)

    @staticmethod
    def _records(item) -> list[dict[str, Any]]:
        if isinstance(item, list):
            return item
        request_id, now, decoded, scores, versions, routes, fields = item
        return [
            {
                "request_id": request_id,
                "flight_key": k,
                "flight_date": k[:10],
                "score": float(s),
                "version": v,
                "arm": r,
                "predicted_at": now,
                **{c: getattr(f, c) for c in fields},
            }
            for k, s, v, r, f in zip(decoded.keys, scores.tolist(), versions, routes, decoded.flights)
        ]

    @classmethod
    def _frame(cls, items: list) -> pd.DataFrame:
        """The items as one frame, built column by column over all their flights at once (a dict per row, or a
        loop per request, would cost the request path's CPU too: they share the interpreter)."""
        frames = [pd.DataFrame(item) for item in items if isinstance(item, list)]
        requests = [item for item in items if not isinstance(item, list)]
        if requests:
            fields = requests[0][6]
            flights = [f for r in requests for f in r[2].flights]
            keys = [k for r in requests for k in r[2].keys]
            cols = {
                "request_id": [r[0] for r in requests for _ in r[2].keys],
                "flight_key": keys,
                "flight_date": [k[:10] for k in keys],
                "score": np.concatenate([r[3] for r in requests]),
                "version": [v for r in requests for v in r[4]],
                "arm": [a for r in requests for a in r[5]],
                "predicted_at": [r[1] for r in requests for _ in r[2].keys],
            }
            for c in fields:
                cols[c] = list(map(operator.attrgetter(c), flights))
            frames.append(pd.DataFrame(cols))
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    # the writer thread ---------------------------------------------------------------------------------------------
    def _take(self) -> tuple[list, int]:
        with self._lock:
            items, n = self._items, self._waiting
            self._items, self._waiting = [], 0
            self._wake.clear()
        return items, n

    def _run(self) -> None:
        held: list = []
        taken = 0
        last = time.monotonic()
        while True:
            stopping = self._stop.is_set()
            self._wake.wait(min(0.2, self.flush_s))
            items, n = self._take()
            held += items
            taken += n
            if held and (taken >= self.flush_rows or time.monotonic() - last >= self.flush_s or stopping):
                left = self._flush(self._frame(held))  # neither written nor spilled: kept for the next round
                with self._lock:
                    self._queued -= taken - len(left)
                held, taken, last = ([left] if left else []), len(left), time.monotonic()
                if left:
                    if stopping:  # nowhere to put them: say so
                        self.lost += len(left)
                        log.error("%d prediction record(s) could be neither written nor spilled: lost", len(left))
                        with self._lock:
                            self._queued -= len(left)
                        held, taken = [], 0
                    else:
                        self._stop.wait(1.0)
            if self._maybe_spilled and time.monotonic() >= max(self._retry_at, self._recover_at):
                try:
                    self._recover()
                except Exception:  # noqa: BLE001 - the writer thread must outlive any one file
                    log.exception("could not write spilled prediction records; retrying later")
            if stopping and not held:
                with self._lock:
                    if not self._items:
                        break
        if self._maybe_spilled:
            try:
                self._recover()
            except Exception:  # noqa: BLE001
                log.exception("could not write spilled prediction records; the next start will")

    def _flush(self, df: pd.DataFrame) -> list[dict[str, Any]]:
        """Write to the lake by flight date; what the lake refuses goes to the spill folder. Returns the records
        that could go to neither (the local disk refused too)."""
        left: list[dict[str, Any]] = []
        for _date, part in df.groupby("flight_date"):
            if time.monotonic() >= self._retry_at:  # after a refusal, no wait on the lake before the retry
                try:
                    self._write(part)
                    continue
                except Exception as exc:  # never lose the service, nor a record, over the log
                    self._refused(exc, len(part))
            records = part.to_dict(orient="records")
            try:
                self._spill(records)
            except OSError:
                log.exception("could not spill %d prediction record(s); keeping them in memory", len(records))
                left += records
        return left

    def _write(self, part: pd.DataFrame) -> None:
        date = part["flight_date"].iloc[0]
        name = f"part-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        self.lake.write_parquet(part.reset_index(drop=True), layout.predictions(date), name)
        self.written += len(part)
        if self._down:
            self._down = False
            log.info("the lake takes prediction records again")

    def _refused(self, exc: Exception, n: int) -> None:
        self.lake_failures += 1
        self._retry_at = time.monotonic() + self.retry_s
        if not self._down:  # once per outage; the count is in /health (log_lake_failures)
            log.warning(
                "the lake refuses prediction records (%s: %s): spilling them to %s, retrying every %.1f s",
                type(exc).__name__,
                str(exc)[:200],
                self.spill_dir,
                self.retry_s,
            )
        self._down = True

    # the spill folder ------------------------------------------------------------------------------------------------
    def _spill_files(self) -> list[Path]:
        return sorted(self.spill_dir.glob("spill-*.jsonl"))

    def _spill(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        name = f"spill-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}-rows{len(records)}.jsonl"
        data = b"\n".join(msgspec.json.encode(r) for r in records)
        tmp = self.spill_dir / f".{name}.tmp"
        with self._spill_lock:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(self.spill_dir / name)  # whole or absent: a reader never sees half a file
            self.spilled_total += len(records)
            self._maybe_spilled = True

    def _adopt_orphans(self) -> None:
        """Files claimed by a process that is gone (it stopped while writing them) are spilled files again."""
        for f in self.spill_dir.glob(".spill-*.claim-*"):
            pid = int(f.name.rsplit("-", 1)[1])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                f.rename(self.spill_dir / f.name[1:].rsplit(".claim-", 1)[0])
            except PermissionError:
                pass

    def _recover(self) -> None:
        """The oldest spilled files to the lake, each removed once written; stops at the first refusal. A file is
        claimed first (renamed), so that two processes logging to the same lake never write it twice."""
        self._maybe_spilled = False  # before listing: a file spilled meanwhile sets it again
        files = self._spill_files()
        if len(files) > 20:
            self._maybe_spilled = True
        self._recover_at = time.monotonic() + min(self.retry_s, 1.0)  # at most once a second while files remain
        for spilled in files[:20]:
            f = self.spill_dir / f".{spilled.name}.claim-{os.getpid()}"
            try:
                spilled.rename(f)
            except FileNotFoundError:
                continue  # another process took it
            records = [msgspec.json.decode(line) for line in f.read_bytes().splitlines() if line]
            df = pd.DataFrame(records)
            parts = list(df.groupby("flight_date"))
            done = 0
            try:
                for _, part in parts:
                    self._write(part)
                    done += 1
            except Exception as exc:  # still refused: keep what is left of the file for the next retry
                self._maybe_spilled = True
                self._refused(exc, len(df))
                if done:  # the dates written are not written twice
                    rest = pd.concat([p for _, p in parts[done:]]).to_dict(orient="records")
                    self._spill(rest)
                    f.unlink()
                else:
                    f.rename(spilled)
                return
            f.unlink()
            log.info("wrote %d spilled prediction record(s) from %s to the lake", len(df), spilled.name)

    def close(self, timeout: float = 30) -> None:
        """Write what is queued (spill it when the lake refuses), then stop. When the writer is stuck longer than
        ``timeout`` (a lake that hangs), what is still queued is spilled from here."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            items, _ = self._take()
            left = [r for item in items for r in self._records(item)]
            self._spill(left)
            log.warning(
                "the prediction log did not finish in %.0f s: %d queued record(s) spilled to %s",
                timeout,
                len(left),
                self.spill_dir,
            )


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
    requests = RequestModel(settings, max_batch=max_batch)
    expected = f"Bearer {token}".encode() if token else None
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
        return {
            "status": status,
            **arms.describe(),
            "refresh": dict(state["refresh"]),
            "logged": state["log"].written if "log" in state else 0,
            "pending_log": state["log"].pending if "log" in state else 0,
            "spilled_log": state["log"].spilled if "log" in state else 0,
            "log_peak_pending": state["log"].peak_pending if "log" in state else 0,
            "log_lake_failures": state["log"].lake_failures if "log" in state else 0,
            "log_lost": state["log"].lost if "log" in state else 0,
        }

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        return store.arms.describe()

    @app.get("/metrics", response_class=Response)
    def prometheus_metrics():
        """The service's telemetry in Prometheus' text format (``serve.metrics``)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    def authorised(given: bytes) -> None:
        if expected is not None and not hmac.compare_digest(given, expected):
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
            *_ARMS,
            "refresh",
            "logged",
            "pending_log",
            "spilled_log",
            "log_peak_pending",
            "log_lake_failures",
            "log_lost",
        ],
        "additionalProperties": False,
        "properties": {
            "status": {
                "type": "string",
                "enum": ["ok", "stale", "no_model"],
                "description": "stale: the last refresh of the aliases failed; what is loaded keeps serving",
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
            "log_lake_failures": _COUNT,
            "log_lost": _COUNT,
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


def main() -> None:
    import uvicorn

    from ..core.config import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    _start_up_check(settings)
    lake = Lake(settings.lake_url)
    store = registry_store(lake)
    token = token_from_env()
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
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
