"""The prediction API (FastAPI): ``POST /predict`` for one flight, ``POST /predict/batch`` for
``{"flights": [...]}``, ``GET /health``, ``GET /versions``, ``GET /metrics`` (Prometheus: ``serve.metrics``).

Serves the registry's ``champion`` and, during a rollout, its ``challenger``: each flight is routed by a stable
hash of its key, with the canary share from ``deployments/rollout.json`` in the lake (written by
``deploy_model``); a challenger alias without a running canary of that version gets no traffic. While a canary
of the challenger runs, whatever its share (0.0: a shadow stage), every flight the champion answers is also scored
by the challenger in the shadow (``Shadow``): after the answer is sent, by one worker thread fed by a bounded
queue (a job that finds it full is dropped and counted, the request never waits), logged with arm ``shadow`` and
never returned. Aliases are re-read every ``MLOPS_SERVE_REFRESH_S`` seconds.
Every prediction is logged to ``predictions/date=<flight date>/`` in the lake, in batches, off the request path
(``logclient.PredictionLog``: bounded in memory, spilled to local disk while the lake refuses writes, written once
it takes them; the frames and the Parquet are made by a child process, ``serve.logwriter``, out of this
interpreter).

The request model is derived from the data sets' declaration (``serve.request``), decoded strictly with msgspec
and encoded straight into the model's matrix (no pandas on the request path). A body over
``MLOPS_SERVE_MAX_BODY_BYTES`` gets 413 before it is parsed, a batch over ``MLOPS_SERVE_MAX_BATCH`` flights 422;
with ``MLOPS_SERVE_TOKEN`` (or ``MLOPS_SERVE_TOKEN_FILE``) set, /predict requires ``Authorization: Bearer
<token>`` (compared in constant time); /health, /versions and /metrics stay open (a gateway in front should keep
/metrics to the scraper). The scheme is case-insensitive; a token under 32 characters stops the start.
``main`` reads its settings (``core.config.ServeSettings``), checks them and the registry (``serve.startup``) and
runs it under ``serve.server``: bounded connections, header/body/idle timeouts, no query string in the access log.
The OpenAPI document is ``serve.openapi``'s.

    python -m include.mlops.serve.app            # or `make serve`; port MLOPS_SERVE_PORT (8000)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import hmac
import logging
import sys
import threading
import time
import uuid
from collections import deque
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from .. import kinds
from ..core import schema
from ..core.config import ServeSettings, Settings, serve_token_problem
from ..core.lake import Lake
from ..core.predictions import SHADOW
from . import openapi, startup
from .logclient import LogHealth, PredictionLog, default_spill_dir
from .metrics import ServiceMetrics, route_of
from .models import ModelStore, Resolved, ServedModel
from .protocol import Logged
from .request import MAX_MESSAGE, Decoded, RequestError, RequestModel
from .server import make_server

log = logging.getLogger("mlops.serving")

DEFAULT_MAX_BODY_BYTES = ServeSettings.max_body_bytes
DEFAULT_MAX_BATCH = ServeSettings.max_batch
DEFAULT_LOG_MAX_ROWS = ServeSettings.log_max_rows
INLINE_BYTES = 32 * 1024  # bodies up to this size are answered on the event loop itself
RELEASE_BYTES = 1024 * 1024  # after a body this large, freed memory is given back to the system
_JSON = (b"content-type", b"application/json")


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


def registry_store(lake: Lake) -> ModelStore:
    from ..core import registry, rollouts

    def resolve() -> Resolved:
        aliases = {a: (registry.alias_version(a) or {}).get("version") for a in ("champion", "challenger")}
        rollout, challenger = rollouts.current(lake), aliases["challenger"]
        return Resolved(aliases, rollouts.canary_share(rollout, challenger), rollouts.shadowing(rollout, challenger))

    def load(version: str) -> ServedModel:
        return ServedModel(kinds.load_version(version))

    return ModelStore(resolve, load)


@dataclasses.dataclass
class Refresh:
    """The last refresh of the aliases and the rollout (``ok``: None before the first)."""

    ok: bool | None = None
    error: str | None = None
    failures: int = 0
    last_ok: str | None = None


@dataclasses.dataclass
class ServiceState:
    """What the service's routes read and its start-up sets: the last refresh, the prediction log (from start-up
    on)."""

    refresh: Refresh = dataclasses.field(default_factory=Refresh)
    log: PredictionLog | None = None

    def log_health(self) -> LogHealth:
        return self.log.health() if self.log is not None else LogHealth()


class ClientGone(Exception):
    """The client disconnected before its body was read."""


class Shadow:
    """The challenger's shadow scoring, off the request path. ``submit`` (after the answer is sent) queues the
    flights of one request that the champion answered; one worker thread scores them with the challenger and logs
    them (``state.log``) with arm ``shadow``, the challenger's version, their own scores, request id and time. The
    queue holds at most ``max_rows`` flights: a job that would pass that is dropped and counted
    (``mlops_serve_shadow_dropped_total``), never waited for. A failure is counted
    (``mlops_serve_prediction_errors_total{arm="shadow"}``) and logged; the client never sees it."""

    def __init__(self, metrics: ServiceMetrics, state: ServiceState, max_rows: int, threads: int = 1):
        self.metrics, self.state, self.max_rows, self.threads = metrics, state, max_rows, threads
        self._jobs: deque[tuple[ServedModel, Decoded]] = deque()
        self._rows = 0  # flights queued
        self._ready = threading.Condition()
        self._closed = self._abandoned = False
        self._thread: threading.Thread | None = None
        self._failures: dict[str, int] = {}  # version -> shadow failures (for the log's pace)

    @property
    def pending(self) -> int:
        return self._rows

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow-scoring", daemon=True)
        self._thread.start()

    def submit(self, model: ServedModel, flights: Decoded) -> None:
        """Queue one request's champion-answered flights for ``model`` (the challenger); never blocks."""
        n = len(flights.keys)
        with self._ready:
            if not self._closed and self._rows + n <= self.max_rows:
                self._jobs.append((model, flights))
                self._rows += n
                self._ready.notify()
                return
        self.metrics.shadow_dropped()

    def close(self, timeout: float = 10) -> None:
        """Score what is queued (for at most ``timeout`` seconds, the rest is dropped), then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._ready:
            self._abandoned = True  # what is still queued is never logged (the log closes next)
            dropped, self._rows = len(self._jobs), 0
            self._jobs.clear()
        if dropped:
            log.warning("%d shadow job(s) still queued at shutdown: dropped", dropped)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closed:
                    self._ready.wait()
                if not self._jobs or self._abandoned:
                    return
                model, flights = self._jobs.popleft()
                self._rows -= len(flights.keys)
            self.score(model, flights)

    def score(self, model: ServedModel, flights: Decoded) -> None:
        version, n = model.version, len(flights.keys)
        started = time.perf_counter()
        try:
            scores = np.asarray(model.predict_array(model.encoder.encode(flights), self.threads), dtype=np.float64)
            if scores.shape != (n,):
                raise ValueError(f"{scores.shape} scores for {n} flights")
        except Exception:  # the challenger's failure in the shadow: counted and logged, the client never sees it
            self.metrics.prediction_failed(SHADOW, version)
            failures = self._failures[version] = self._failures.get(version, 0) + 1
            if failures == 1 or failures % 1000 == 0:
                log.exception("shadow scoring by v%s failed (%d time(s) so far; clients unaffected)", version, failures)
            return
        self.metrics.shadow_scored(version, time.perf_counter() - started)
        now = dt.datetime.now(dt.UTC).isoformat()
        self.state.log.put(
            Logged(uuid.uuid4().hex, now, flights.flights, flights.keys, scores.tobytes(), [version] * n, [SHADOW] * n)
        )


class Predictions:
    """``POST /predict`` and ``POST /predict/batch`` as plain ASGI, ahead of FastAPI's routing: the token and the
    body's size are checked before the body is read, the body is decoded once by msgspec, the answer is logged
    (``state.log``)."""

    ROUTES = {"/predict": False, "/predict/batch": True}  # path -> a batch

    def __init__(
        self,
        store: ModelStore,
        requests: RequestModel,
        metrics: ServiceMetrics,
        state: ServiceState,
        token: str | None,
        max_body_bytes: int,
        threads: int,
        shadow: Shadow,
    ):
        import anyio

        self.store, self.requests, self.metrics, self.state, self.shadow = store, requests, metrics, state, shadow
        self.expected = token.encode() if token else None
        self.max_body_bytes, self.threads = max_body_bytes, threads
        self._in_thread = anyio.to_thread.run_sync

    def authorised(self, given: bytes) -> None:
        """``Authorization: Bearer <token>``, the scheme in any case (RFC 7235), the token compared in constant
        time."""
        scheme, _, credentials = given.partition(b" ")
        if self.expected is not None and not (
            scheme.lower() == b"bearer" and hmac.compare_digest(credentials.lstrip(b" "), self.expected)
        ):
            raise RequestError(
                401,
                ["header", "authorization"],
                "a bearer token is required (Authorization: Bearer <MLOPS_SERVE_TOKEN>)",
                "unauthorised",
            )

    async def read_body(self, headers: dict[bytes, bytes], receive) -> bytes:
        """The body, refused with 413 once it is larger than allowed: by its Content-Length before a byte is
        read, else (chunked) as soon as the bytes streamed pass the limit."""
        limit = self.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                raise RequestError(400, ["header", "content-length"], "Content-Length is not a number", "header")
            if int(length) > limit:
                raise RequestError(
                    413,
                    ["body"],
                    f"the body is {int(length)} bytes; at most {limit} (MLOPS_SERVE_MAX_BODY_BYTES): split the batch",
                    "too_large",
                )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(
                    413,
                    ["body"],
                    f"the body is over {limit} bytes (MLOPS_SERVE_MAX_BODY_BYTES): split the batch",
                    "too_large",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def answer(
        self, body: bytes, batch: bool
    ) -> tuple[bytes, tuple[tuple[str, str], ...], tuple[ServedModel, Decoded] | None]:
        """The answer's body, the (arm, version) pairs that scored its flights and the shadow job (the challenger
        and the flights the champion answered; None when nothing is shadowed). A model that fails to score is
        counted (``mlops_serve_prediction_errors_total``) and its exception goes on, failing the request."""
        decoded = self.requests.decode_batch(body) if batch else self.requests.decode_one(body)
        arms = self.store.arms  # one snapshot for the whole request
        if not arms.serving:
            raise RequestError(503, [], "no model version is deployed yet", "no_model")
        routes = arms.route(decoded.keys)
        n = len(decoded.keys)
        scores = np.empty(n)
        versions = [""] * n
        served, shadow_job = [], None
        for arm_name in ("champion", "challenger"):
            model = getattr(arms, arm_name)
            if model is None:
                continue
            idx = [i for i, r in enumerate(routes) if r == arm_name]
            if not idx:
                continue
            part = decoded if len(idx) == n else decoded.subset(idx)
            try:
                scores[idx] = model.predict_array(model.encoder.encode(part), self.threads)
            except RequestError:  # the request's fault (422), not the model's
                raise
            except Exception:
                self.metrics.prediction_failed(arm_name, model.version)
                raise
            if arm_name == "champion" and arms.shadow_model is not None:
                shadow_job = (arms.shadow_model, part)
            for i in idx:
                versions[i] = model.version
            self.metrics.predicted(arm_name, model.version, len(idx))
            served.append((arm_name, model.version))
        request_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.UTC).isoformat()
        key_field, score = self.requests.key_field, self.requests.score
        self.state.log.put(Logged(request_id, now, decoded.flights, decoded.keys, scores.tobytes(), versions, routes))
        content = msgspec.json.encode(
            {
                "request_id": request_id,
                "predictions": [
                    {key_field: k, score: s, "version": v, "arm": r}
                    for k, s, v, r in zip(decoded.keys, scores.tolist(), versions, routes)
                ],
            }
        )
        return content, tuple(served), shadow_job

    async def __call__(self, scope, receive, send, batch: bool) -> None:
        metrics = self.metrics
        started = time.perf_counter()
        headers = dict(scope["headers"])
        status, extra, served, shadow_job = 200, [], (), None
        try:
            if scope["method"] != "POST":
                raise RequestError(405, [], "Method Not Allowed", "method")
            self.authorised(headers.get(b"authorization", b""))
            body = await self.read_body(headers, receive)
            if len(body) <= INLINE_BYTES:
                content, served, shadow_job = self.answer(body, batch)
            else:  # a large batch: off the event loop, so /health and small requests keep answering
                content, served, shadow_job = await self._in_thread(self.answer, body, batch)
                if len(body) >= RELEASE_BYTES:
                    del body
                    await self._in_thread(release_memory)
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
                "headers": [_JSON, (b"content-length", str(len(content)).encode()), *extra],
            }
        )
        await send({"type": "http.response.body", "body": content})
        seconds = time.perf_counter() - started
        metrics.observe(scope["path"], status, seconds)
        if served:
            metrics.served(scope["path"], served, seconds)
        if shadow_job is not None:  # after the answer is sent: the worker scores it, the request never waits
            self.shadow.submit(*shadow_job)


class PredictionService:
    """The ASGI application: the prediction routes answered directly (``Predictions``), everything else
    (``/health``, ``/versions``, ``/docs``, ``/openapi.json``, lifespan) by the FastAPI app, whose attributes it
    passes on."""

    def __init__(self, app, predictions: Predictions, metrics: ServiceMetrics):
        self.app, self._predictions, self.metrics = app, predictions, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        batch = Predictions.ROUTES.get(scope["path"])
        if batch is not None:
            return await self._predictions(scope, receive, send, batch)  # counts and times itself
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


def create_app(
    store: ModelStore,
    lake: Lake,
    refresh_s: float = ServeSettings.refresh_s,
    flush_rows: int = 500,
    flush_s: float = ServeSettings.flush_s,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    threads: int = ServeSettings.threads,
    settings: Settings | None = None,
    log_max_rows: int = DEFAULT_LOG_MAX_ROWS,
    spill_dir: Path | None = None,
    log_retry_s: float = 2.0,
    freeze_gc: bool = False,
    shadow_max_rows: int | None = None,
) -> PredictionService:
    """The service. ``token``: the bearer token /predict requires (None: open); ``max_body_bytes``: larger
    bodies get 413 before they are parsed; ``max_batch``: the most flights in one batch; ``threads``: LightGBM
    threads per prediction (1 fits concurrent requests on few cores); ``shadow_max_rows``: the most flights
    waiting for shadow scoring (default: two full batches)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST

    if token and (problem := serve_token_problem(token, "token")):
        raise ValueError(problem)
    state = ServiceState()
    requests = RequestModel(settings, max_batch=max_batch)
    metrics = ServiceMetrics(lambda: (state.log, store.arms, state.refresh.ok))
    shadow = Shadow(metrics, state, shadow_max_rows or 2 * max_batch, threads)

    def refresh() -> None:
        """Re-read the aliases and the rollout. When that fails (registry or lake unreachable), what is loaded
        keeps serving unchanged (an error is never read as "no champion") and /health says so."""
        r = state.refresh
        try:
            store.refresh()
        except Exception as exc:  # a registry hiccup must not stop serving what is loaded
            r.ok, r.error, r.failures = False, f"{type(exc).__name__}: {str(exc)[:300]}", r.failures + 1
            metrics.refresh_failed()
            log.exception("model refresh failed; still serving %s", store.arms.describe())
        else:
            r.ok, r.error, r.last_ok = True, None, dt.datetime.now(dt.UTC).isoformat()

    @asynccontextmanager
    async def lifespan(app):
        refresh()
        if freeze_gc:  # what start-up made (modules, models) is never garbage: keep the collector off it
            gc.collect()
            gc.freeze()
        stop = threading.Event()

        def refresher() -> None:
            while not stop.wait(refresh_s):
                refresh()

        threading.Thread(target=refresher, name="model-refresh", daemon=True).start()
        state.log = PredictionLog(
            lake,
            requests.logged,
            flush_rows,
            flush_s,
            max_rows=log_max_rows,
            spill_dir=spill_dir or default_spill_dir(lake),
            retry_s=log_retry_s,
        )
        shadow.start()
        yield
        stop.set()
        shadow.close()  # before the log: what it scores still goes to the log
        state.log.close()

    app = FastAPI(title=f"{schema.model().title} prediction", version="1", lifespan=lifespan)

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
        arms, refreshed, logged = store.arms, state.refresh, state.log_health()
        status = "no_model" if not arms.serving else ("ok" if refreshed.ok is not False else "stale")
        reasons = logged.reasons()
        if status == "ok" and reasons:
            status = "degraded"
        if status == "stale":
            reasons.insert(0, f"the last refresh of the aliases failed: {refreshed.error}")
        elif status == "no_model":
            reasons.insert(0, "no model version is deployed yet")
        return {
            "status": status,
            "reasons": reasons,
            **arms.describe(),
            "refresh": dataclasses.asdict(refreshed),
            **logged._asdict(),
        }

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        return store.arms.describe()

    @app.get("/metrics", response_class=Response)
    def prometheus_metrics():
        """The service's telemetry in Prometheus' text format (``serve.metrics``)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    openapi.install(app, requests.schema(), bool(token))
    predictions = Predictions(store, requests, metrics, state, token, max_body_bytes, threads, shadow)
    return PredictionService(app, predictions, metrics)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serving, limits = startup.checked_settings()
    settings = Settings.from_env()
    startup.check_store(settings)
    lake = Lake(settings.lake_url)
    app = create_app(
        registry_store(lake),
        lake,
        refresh_s=serving.refresh_s,
        flush_s=serving.flush_s,
        token=serving.token,
        max_body_bytes=serving.max_body_bytes,
        max_batch=serving.max_batch,
        threads=serving.threads,
        log_max_rows=serving.log_max_rows,
        spill_dir=serving.spill_dir,
        freeze_gc=True,
    )
    startup.announce(serving, limits)
    server = make_server(app, serving.host, serving.port, limits)
    try:
        server.run()
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly and re-raises the signal
        pass
    if not server.started:
        sys.exit(3)  # as uvicorn.run: it did not start (the port taken, the app's start-up failed)


if __name__ == "__main__":
    main()
