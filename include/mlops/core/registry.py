"""Experiment tracking and the model registry (MLflow).

Default store: SQLite and local artifacts under ``$MLOPS_HOME/mlflow`` (embedded, nothing to run);
``MLFLOW_TRACKING_URI`` points everything at a real tracking server instead. One registered model
(the declared model's name, ``include/config/datasets.yaml``; ``MLOPS_MODEL_NAME`` overrides it) holds every version; champion and challenger are aliases.
A version is created only as the very last step of a successful run: a failed run registers nothing.

Fail closed: only "does not exist" reads as absent (no such model, alias or artifact). Every other error (the
store unreachable, a timeout, a broken database) propagates, so that a decision taken on the registry's answer
(promote without a canary, gate without a champion, skip monitoring) is never taken on an error.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)


def model_name() -> str:
    """The registry's name of the model (``models.ModelSpec.registered_name``: ``MLOPS_MODEL_NAME``, else the
    declared name)."""
    from .schema import model

    return model().registered_name


def experiment() -> str:
    """The tracking experiment of the model's runs (declared with the model)."""
    from .schema import model

    return model().experiment


_EMBEDDED: set[str] = set()  # URIs we chose ourselves (mlflow.set_tracking_uri exports them to the environment)


def _user_tracking_uri() -> str | None:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri if uri and uri not in _EMBEDDED else None


def tracking_uri(settings: Settings | None = None) -> str:
    if _user_tracking_uri():
        return _user_tracking_uri()
    settings = settings or Settings.from_env()
    root = settings.home / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    _EMBEDDED.add(uri)
    return uri


def code_version() -> str:
    if os.environ.get("MLOPS_CODE_VERSION"):
        return os.environ["MLOPS_CODE_VERSION"]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _mlflow(settings: Settings | None = None):
    import mlflow

    uri = tracking_uri(settings)
    embedded = uri in _EMBEDDED
    mlflow.set_tracking_uri(uri)
    name = experiment()
    if mlflow.get_experiment_by_name(name) is None:
        artifacts = None  # a tracking server decides where artifacts go
        if embedded:
            artifacts = ((settings or Settings.from_env()).home / "mlflow" / "artifacts").as_uri()
        mlflow.create_experiment(name, artifact_location=artifacts)
    mlflow.set_experiment(name)
    return mlflow


@dataclass
class RegisteredRun:
    run_id: str
    model_name: str
    version: str
    model_uri: str


def log_training_run(
    *,
    model_path: Path,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    feature_spec: dict[str, Any],
    feature_importance: dict[str, float],
    register_model: Callable[[Path, str], Any],
    extra_artifacts: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> RegisteredRun:
    """Track one finished training run and register its model as a new version (``register_model``: the model
    kind's ``register``, given the model file and the registry's name, inside the run).

    Idempotent per ``tags["run_key"]``: when a version of this model already came from a run with that key (a
    retry after MLflow accepted the version but the task failed before it could say so), that version is
    returned instead of registering a second one."""
    mlflow = _mlflow(settings)
    if tags.get("run_key"):
        existing = version_for_run_key(tags["run_key"], settings)
        if existing is not None:
            log.info(
                "run key %s already registered as %s version %s: not registering again",
                tags["run_key"],
                existing.model_name,
                existing.version,
            )
            return existing
    with mlflow.start_run(tags={"code_version": code_version(), **tags}) as run:
        mlflow.log_params({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})  # NaN-free
        mlflow.log_dict(feature_spec, "feature_spec.json")
        mlflow.log_dict(dict(sorted(feature_importance.items(), key=lambda kv: -kv[1])), "feature_importance.json")
        for name, obj in (extra_artifacts or {}).items():
            mlflow.log_dict(obj, name)
        info = register_model(model_path, model_name())
    version = str(info.registered_model_version)
    log.info("run %s registered as %s version %s", run.info.run_id, model_name(), version)
    return RegisteredRun(run.info.run_id, model_name(), version, f"models:/{model_name()}/{version}")


# how MLflow's stores (SQL, file, and a tracking server relaying them) say that an alias does not exist
_MISSING_ALIAS = re.compile(r"\bRegistered model alias \S+ not found\b")


def is_absent(exc: BaseException) -> bool:
    """Whether an MLflow error says that this project's registered model (``model_name()``) or one of its aliases
    does not exist, and nothing else.

    MLflow says so in two ways: RESOURCE_DOES_NOT_EXIST "Registered Model with name=<name> not found" (no version
    registered yet: no alias either) and INVALID_PARAMETER_VALUE "Registered model alias <alias> not found.". The
    same codes about anything else (a run, an experiment, a model version, another registered model) do not say
    that the alias asked for is absent: like every other error they are not an answer."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    code, text = getattr(exc, "error_code", ""), str(exc)
    if code == "RESOURCE_DOES_NOT_EXIST":
        return f"Registered Model with name={model_name()} not found" in text
    return code == "INVALID_PARAMETER_VALUE" and _MISSING_ALIAS.search(text) is not None


def version_for_run_key(run_key: str, settings: Settings | None = None) -> RegisteredRun | None:
    """The model version registered from the tracked run tagged ``run_key``, if one exists."""
    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment())
    quoted = run_key.replace("'", "")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.run_key = '{quoted}'")
    if not runs:
        return None
    ids = {r.info.run_id for r in runs}
    for v in sorted((v for v in versions(settings) if v["run_id"] in ids), key=lambda v: int(v["version"])):
        return RegisteredRun(v["run_id"], model_name(), v["version"], f"models:/{model_name()}/{v['version']}")
    return None


def versions(settings: Settings | None = None) -> list[dict[str, Any]]:
    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()
    try:
        vs = client.search_model_versions(f"name='{model_name()}'")
    except Exception as exc:
        if is_absent(exc):  # no registered model yet
            return []
        raise
    return sorted(
        (
            {"version": str(v.version), "run_id": v.run_id, "aliases": list(v.aliases or []), "status": v.status}
            for v in vs
        ),
        key=lambda d: int(d["version"]),
    )


def _client(settings: Settings | None = None):
    return _mlflow(settings).MlflowClient()


def alias_version(alias: str, settings: Settings | None = None) -> dict[str, Any] | None:
    """The version an alias points at (``champion``, ``challenger``), or None."""
    client = _client(settings)
    try:
        v = client.get_model_version_by_alias(model_name(), alias)
    except Exception as exc:
        if is_absent(exc):  # the alias (or the model) does not exist yet
            return None
        raise  # anything else is not an answer: the caller must not decide on it
    return {"version": str(v.version), "run_id": v.run_id}


def version_model(version: str, settings: Settings | None = None) -> tuple[str, dict[str, Any]]:
    """(model URI, recorded feature spec) of a registered version: what its kind loads it from (``kinds``)."""
    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()
    mv = client.get_model_version(model_name(), str(version))
    spec = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/feature_spec.json")
    return f"models:/{model_name()}/{version}", spec


def load_artifact(version: str, name: str, settings: Settings | None = None) -> dict[str, Any] | None:
    """A JSON artifact of a version's run (``profile.json``, ``feature_spec.json``), or None if it has none."""
    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()
    mv = client.get_model_version(model_name(), str(version))
    if name not in {a.path for a in client.list_artifacts(mv.run_id)}:
        return None  # an older version without it; any other failure (store unreachable...) is raised
    return mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{name}")


def set_alias(alias: str, version: str, settings: Settings | None = None) -> None:
    _client(settings).set_registered_model_alias(model_name(), alias, str(version))


def tag_version(version: str, tags: dict[str, str], settings: Settings | None = None) -> None:
    client = _client(settings)
    for k, v in tags.items():
        client.set_model_version_tag(model_name(), str(version), k, str(v))


def log_to_run(
    run_id: str,
    metrics: dict[str, float],
    texts: dict[str, str],
    dicts: dict[str, Any],
    settings: Settings | None = None,
) -> None:
    client = _client(settings)
    for k, v in metrics.items():
        if v == v:
            client.log_metric(run_id, k, float(v))
    for name, text in texts.items():
        client.log_text(run_id, text, name)
    for name, obj in dicts.items():
        client.log_dict(run_id, obj, name)


def log_run(
    name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    finished: bool = True,
    settings: Settings | None = None,
) -> str:
    """A tracked run that registers nothing (a tuning study, each of its trials: ``parent_run_id`` makes it a
    child run in MLflow's UI), with its parameters and metrics; left running when not ``finished`` (a study's run
    while its trials go on: ``log_to_run`` adds to it). Its run id."""
    mlflow = _mlflow(settings)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment())
    run_tags = {"mlflow.runName": name, "code_version": code_version(), **(tags or {})}
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(exp.experiment_id, tags=run_tags)
    run_id = run.info.run_id
    for k, v in params.items():
        client.log_param(run_id, k, json.dumps(v) if isinstance(v, (dict, list)) else v)
    for k, v in metrics.items():
        if v == v:
            client.log_metric(run_id, k, float(v))
    if finished:
        client.set_terminated(run_id)
    return run_id


def end_run(run_id: str, status: str = "FINISHED", settings: Settings | None = None) -> None:
    _client(settings).set_terminated(run_id, status=status)


def delete_alias(alias: str, settings: Settings | None = None) -> None:
    client = _client(settings)
    try:
        client.delete_registered_model_alias(model_name(), alias)
    except Exception as exc:
        if not is_absent(exc):  # already absent is fine; a failure to remove it is not
            raise


# the audit trail's head (``core.audit``), kept here, outside the lake: "<seq>:<sha256 hex>" of its last record
AUDIT_HEAD_TAG = "mlops.audit_head"
_AUDIT_HEAD = re.compile(r"^([1-9][0-9]*):([0-9a-f]{64})$")


def audit_head(settings: Settings | None = None) -> tuple[int, str] | None:
    """The audit trail's head, (seq, hash) of its last acknowledged record, from a tag of the registered model;
    None when there is none yet (no tag, or no registered model). A tag that is not ``<seq>:<sha256 hex>`` is a
    ValueError, and any other failure (the registry unreachable) propagates: nothing is appended on a guess."""
    client = _client(settings)
    try:
        rm = client.get_registered_model(model_name())
    except Exception as exc:
        if is_absent(exc):
            return None
        raise
    raw = (rm.tags or {}).get(AUDIT_HEAD_TAG)
    if raw is None:
        return None
    m = _AUDIT_HEAD.match(raw)
    if not m:
        raise ValueError(f"registered model {model_name()}: tag {AUDIT_HEAD_TAG}={raw!r} is not '<seq>:<sha256 hex>'")
    return int(m.group(1)), m.group(2)


def set_audit_head(seq: int, digest: str, settings: Settings | None = None) -> None:
    """Set the audit trail's head; the registered model is created (empty) when no version is registered yet."""
    value = f"{int(seq)}:{digest}"
    if not _AUDIT_HEAD.match(value):
        raise ValueError(f"not an audit head: {value!r} (a seq from 1, a sha256 hex digest)")
    client = _client(settings)
    try:
        client.set_registered_model_tag(model_name(), AUDIT_HEAD_TAG, value)
        return
    except Exception as exc:
        if not is_absent(exc):
            raise
    try:
        client.create_registered_model(model_name(), tags={AUDIT_HEAD_TAG: value})
    except Exception as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":  # created meanwhile: set the tag on it
            raise
        client.set_registered_model_tag(model_name(), AUDIT_HEAD_TAG, value)
