"""The prediction API (FastAPI): ``/predict`` for one flight or a batch, ``/health``, ``/versions``.

Serves the registry's ``champion`` and, during a rollout, its ``challenger``: each flight is routed by a stable
hash of its key, with the canary share from ``deployments/rollout.json`` in the lake (written by
``deploy_model``); a challenger alias without a running canary of that version gets no traffic. Aliases are
re-read every ``MLOPS_SERVE_REFRESH_S`` seconds.
Every prediction is logged to ``predictions/date=<flight date>/`` in the lake, in batches, off the request path.

    python -m include.mlops.serve.app            # or `make serve`; port MLOPS_SERVE_PORT (8000)
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from ..train.features import FeatureSpec
from ..core import layout
from ..core.lake import Lake
from .models import ModelStore, ServedModel

log = logging.getLogger("mlops.serving")


class Flight(BaseModel):
    """A scheduled flight, as known before departure; weather at the origin is optional."""

    year: Annotated[int, Field(ge=1900, le=2100)]
    month: Annotated[int, Field(ge=1, le=12)]
    day: Annotated[int, Field(ge=1, le=31)]
    carrier: Annotated[str, Field(pattern=r"^[A-Z0-9]{2}$")]
    flight: Annotated[int, Field(ge=1, le=9999)]
    origin: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    dest: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    sched_dep_time: Annotated[int, Field(ge=0, le=2359)]
    sched_arr_time: Annotated[int, Field(ge=0, le=2359)]
    distance: Annotated[float, Field(gt=0, le=10000)]
    time_hour: dt.datetime = Field(description="scheduled departure hour, UTC")
    temp: float | None = None
    dewp: float | None = None
    humid: float | None = None
    wind_dir: float | None = None
    wind_speed: float | None = None
    wind_gust: float | None = None
    precip: float | None = None
    pressure: float | None = None
    visib: float | None = None

    @property
    def key(self) -> str:
        return f"{self.year}-{self.month:02d}-{self.day:02d}/{self.carrier}/{self.flight}/{self.origin}"


class Batch(BaseModel):
    flights: Annotated[list[Flight], Field(min_length=1, max_length=10_000)]


class Prediction(BaseModel):
    flight_key: str
    delay_probability: float
    version: str
    arm: str


class PredictResponse(BaseModel):
    request_id: str
    predictions: list[Prediction]


def frame(flights: list[Flight]) -> pd.DataFrame:
    df = pd.DataFrame([f.model_dump() for f in flights])
    ts = pd.to_datetime(df["time_hour"], utc=True)
    df["event_hour_utc"] = ts.dt.hour
    df["event_weekday"] = ts.dt.weekday
    return df


class PredictionLog:
    """Buffers prediction records and writes them to the lake in batches from a background thread."""

    def __init__(self, lake: Lake, flush_rows: int = 500, flush_s: float = 5.0):
        self.lake, self.flush_rows, self.flush_s = lake, flush_rows, flush_s
        self.q: queue.Queue = queue.Queue()
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def put(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.q.put(r)

    def _run(self) -> None:
        buf: list[dict[str, Any]] = []
        last = time.monotonic()
        while not (self._stop.is_set() and self.q.empty()):
            try:
                buf.append(self.q.get(timeout=0.2))
            except queue.Empty:
                pass
            if buf and (len(buf) >= self.flush_rows or time.monotonic() - last >= self.flush_s
                        or self._stop.is_set()):
                self._write(buf)
                buf, last = [], time.monotonic()
        if buf:
            self._write(buf)

    def _write(self, records: list[dict[str, Any]]) -> None:
        df = pd.DataFrame(records)
        for date, part in df.groupby("flight_date"):
            name = f"part-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
            try:
                self.lake.write_parquet(part.reset_index(drop=True), layout.predictions(date), name)
                self.written += len(part)
            except Exception:  # never lose the service over the log; keep the records for the next try
                log.exception("could not write %d prediction record(s); retrying later", len(part))
                for r in part.to_dict(orient="records"):
                    self.q.put(r)
                time.sleep(1)

    def close(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)


def registry_store(lake: Lake) -> ModelStore:
    from ..core import rollouts
    from ..core import registry

    def resolve():
        aliases = {a: (registry.alias_version(a) or {}).get("version") for a in ("champion", "challenger")}
        return aliases, rollouts.canary_share(rollouts.current(lake), aliases["challenger"])

    def load(version: str) -> ServedModel:
        booster, spec = registry.load_version(version)
        return ServedModel(version, booster, FeatureSpec.from_dict(
            {k: spec[k] for k in ("numeric", "categorical", "categories", "label")}))

    return ModelStore(resolve, load)


def create_app(store: ModelStore, lake: Lake, refresh_s: float = 10.0, flush_rows: int = 500,
               flush_s: float = 5.0):
    from fastapi import FastAPI, HTTPException

    state: dict[str, Any] = {"refresh": {"ok": None, "error": None, "failures": 0, "last_ok": None}}

    def refresh() -> None:
        """Re-read the aliases and the rollout. When that fails (registry or lake unreachable), what is loaded
        keeps serving unchanged (an error is never read as "no champion") and /health says so."""
        r = state["refresh"]
        try:
            store.refresh()
        except Exception as exc:  # a registry hiccup must not stop serving what is loaded
            r.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:300]}", failures=r["failures"] + 1)
            log.exception("model refresh failed; still serving %s", store.arms.describe())
        else:
            r.update(ok=True, error=None, last_ok=dt.datetime.now(dt.timezone.utc).isoformat())

    def refresher(stop: threading.Event) -> None:
        while not stop.wait(refresh_s):
            refresh()

    @asynccontextmanager
    async def lifespan(app):
        refresh()
        stop = threading.Event()
        t = threading.Thread(target=refresher, args=(stop,), name="model-refresh", daemon=True)
        t.start()
        state["log"] = PredictionLog(lake, flush_rows, flush_s)
        yield
        stop.set()
        state["log"].close()

    app = FastAPI(title="Flight delay prediction", version="1", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict[str, Any]:
        arms = store.arms
        serving = bool(arms.champion or arms.challenger)
        status = "no_model" if not serving else ("ok" if state["refresh"]["ok"] is not False else "stale")
        return {"status": status, **arms.describe(), "refresh": dict(state["refresh"]),
                "logged": state["log"].written if "log" in state else 0,
                "pending_log": state["log"].q.qsize() if "log" in state else 0}

    @app.get("/versions")
    def versions() -> dict[str, Any]:
        return store.arms.describe()

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: Union[Batch, Flight]) -> PredictResponse:
        flights = body.flights if isinstance(body, Batch) else [body]
        arms = store.arms  # one snapshot for the whole request
        if arms.champion is None and arms.challenger is None:
            raise HTTPException(status_code=503, detail="no model version is deployed yet")
        keys = [f.key for f in flights]
        routes = arms.route(keys)
        df = frame(flights)
        scores = np.empty(len(flights))
        versions = [""] * len(flights)
        for arm_name in ("champion", "challenger"):
            idx = [i for i, r in enumerate(routes) if r == arm_name]
            if idx:
                model = getattr(arms, arm_name)
                scores[idx] = model.predict(df.iloc[idx])
                for i in idx:
                    versions[i] = model.version
        request_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        state["log"].put([
            {"request_id": request_id, "flight_key": k, "flight_date": k[:10], "score": float(s), "version": v,
             "arm": r, "predicted_at": now, **{c: f.model_dump(mode="json").get(c) for c in FEATURE_FIELDS}}
            for k, s, v, r, f in zip(keys, scores, versions, routes, flights)])
        return PredictResponse(request_id=request_id, predictions=[
            Prediction(flight_key=k, delay_probability=float(s), version=v, arm=r)
            for k, s, v, r in zip(keys, scores, versions, routes)])

    return app


FEATURE_FIELDS = [n for n in Flight.model_fields if n not in ("year", "month", "day", "flight")] + ["month"]


GET_A_MODEL = ("get one with `make demo` (the whole lifecycle; DEMO_ARGS=--fast replays six weeks), or run the "
               "DAGs: publish drops (python -m include.mlops.ingest.upstream publish 2013-01-01 --days 14), ingest "
               "them (ingest_flights), then trigger train_model (`make up`, or airflow dags test train_model); the "
               "first version that passes the gate is promoted to champion by deploy_model")


def _start_up_check(settings) -> str:
    """Say which registry and lake the service reads; refuse an embedded store that does not exist (a wrong
    MLOPS_HOME would otherwise get a new, empty one and every request a 503). Returns the tracking URI."""
    from ..core import registry

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{settings.home / 'mlflow' / 'mlflow.db'}"
    log.info("registry: %s (model %r, MLOPS_HOME=%s)", uri, registry.model_name(), settings.home)
    log.info("lake: %s (rollouts read from deployments/, predictions logged to predictions/)", settings.lake_url)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise SystemExit(
            f"\nERROR: no MLflow store at {uri[len('sqlite:///'):]}: nothing was ever trained with MLOPS_HOME="
            f"{settings.home}.\n  Wrong place? Point MLOPS_HOME (or MLFLOW_TRACKING_URI) at the one your models are "
            f"in, e.g. `make serve MLOPS_HOME=/path/to/.mlops`.\n  No model yet? {GET_A_MODEL[:1].upper() + GET_A_MODEL[1:]}.\n"
            "The service does not create an empty store.")
    versions = registry.versions(settings)
    champion = registry.alias_version("champion", settings)
    if not versions:
        log.warning("NO MODEL: the registry %s has no version of %r yet, so /predict answers 503 and /health "
                    "'no_model' until a champion is registered (the service checks every MLOPS_SERVE_REFRESH_S); "
                    "%s", uri, registry.model_name(), GET_A_MODEL)
    elif not champion:
        log.warning("NO CHAMPION: %d version(s) of %r registered, none is champion yet: deploy_model promotes one "
                    "(triggered by a passed gate of train_model, or by hand with the version in its conf)",
                    len(versions), registry.model_name())
    else:
        log.info("champion: version %s of %r (%d version(s) registered)", champion["version"], registry.model_name(),
                 len(versions))
    return uri


def main() -> None:
    import uvicorn

    from ..core.config import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    _start_up_check(settings)
    lake = Lake(settings.lake_url)
    store = registry_store(lake)
    app = create_app(store, lake, refresh_s=float(os.environ.get("MLOPS_SERVE_REFRESH_S", "10")),
                     flush_s=float(os.environ.get("MLOPS_SERVE_FLUSH_S", "5")))
    host, port = os.environ.get("MLOPS_SERVE_HOST", "127.0.0.1"), int(os.environ.get("MLOPS_SERVE_PORT", "8000"))
    log.info("serving on http://%s:%d (POST /predict, GET /health, GET /versions)", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
