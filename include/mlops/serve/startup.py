"""The prediction service's checks before it starts (``python -m include.mlops.serve.app``): its settings (a token
shorter than the rule, a server limit that is not a number: refused, naming the variable, before anything starts),
then the registry and the lake it reads (an embedded store that does not exist is refused: a wrong MLOPS_HOME would
otherwise get a new, empty one and every request a 503), and what it serves, in its log."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..core import registry
from ..core.config import ServeSettings, Settings, serve_token_problem
from .server import Limits, open_file_limit

log = logging.getLogger("mlops.serving")


def checked_settings() -> tuple[ServeSettings, Limits]:
    """The service's settings and the server's limits from the environment, checked before anything starts: a
    token shorter than the rule (``core.config.serve_token_problem``) or a setting that is not a number is a
    SystemExit naming the variable. Raises the process's open-file limit to its hard limit first."""
    try:
        settings = ServeSettings.from_env()
        where = "MLOPS_SERVE_TOKEN" if os.environ.get("MLOPS_SERVE_TOKEN", "").strip() else "MLOPS_SERVE_TOKEN_FILE"
        if settings.token and (problem := serve_token_problem(settings.token, where)):
            raise ValueError(problem)
        limits = Limits.of(settings, fd_limit=open_file_limit(raise_soft=True))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"\nERROR: {exc}\nThe prediction service did not start.") from None
    return settings, limits


GET_A_MODEL = (
    "get one with `make demo` (the whole lifecycle; DEMO_ARGS=--fast replays six weeks), or run the "
    "DAGs: publish drops (python -m include.mlops.simulate.upstream publish 2013-01-01 --days 14), ingest "
    "them (ingest_flights), then trigger train_model (`make up`, or airflow dags test train_model); the "
    "first version that passes the gate is promoted to champion by deploy_model"
)


def check_store(settings: Settings) -> str:
    """Say which registry and lake the service reads; refuse an embedded store that does not exist (a wrong
    MLOPS_HOME would otherwise get a new, empty one and every request a 503). Returns the tracking URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{settings.home / 'mlflow' / 'mlflow.db'}"
    log.info("registry: %s (model %r, MLOPS_HOME=%s)", uri, registry.model_name(), settings.home)
    log.info("lake: %s (rollouts read from deployments/, predictions logged to predictions/)", settings.lake_url)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        raise SystemExit(
            f"\nERROR: no MLflow store at {uri[len('sqlite:///') :]}: nothing was ever trained with MLOPS_HOME="
            f"{settings.home}.\n  Wrong place? Point MLOPS_HOME (or MLFLOW_TRACKING_URI) at the one your models are "
            f"in, e.g. `make serve MLOPS_HOME=/path/to/.mlops`.\n"
            f"  No model yet? {GET_A_MODEL[:1].upper() + GET_A_MODEL[1:]}.\n"
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


def announce(settings: ServeSettings, limits: Limits) -> None:
    """What the service is about to serve, and how, in its log."""
    log.info(
        "/predict %s",
        "requires the bearer token (MLOPS_SERVE_TOKEN)"
        if settings.token
        else "is open: set MLOPS_SERVE_TOKEN (or MLOPS_SERVE_TOKEN_FILE) to require a bearer token",
    )
    log.info(
        "serving on http://%s:%d (POST /predict, POST /predict/batch, GET /health, GET /versions, GET /metrics)",
        settings.host,
        settings.port,
    )
    log.info(
        "connections: at most %d open (MLOPS_SERVE_MAX_CONNECTIONS; open-file limit %d), a request's headers "
        "within %g s (MLOPS_SERVE_HEADER_TIMEOUT_S), idle ones closed after %g s (MLOPS_SERVE_KEEPALIVE_S)",
        limits.max_connections,
        open_file_limit(),
        limits.header_timeout_s,
        limits.keepalive_s,
    )
