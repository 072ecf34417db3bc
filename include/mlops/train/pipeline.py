"""The training lifecycle as plain functions: training set -> Horovod job -> evaluation -> registry (the gate
that follows is ``evaluate.gate.run``).

Everything a step hands to the next lives in the lake under ``training/<run_key>/`` (training set shards,
``spec.json``, the model once whole), so each step can run on a different worker.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .. import kinds
from ..core import frame, layout, schema
from ..core import profile as reference
from ..core.config import Settings
from ..core.lake import Lake, as_date
from ..core.metrics import metrics
from ..core.schema import model as declared_model
from . import features as F
from . import params as params_file
from . import snapshots
from .distributed import Job, write_training_set
from .launch import run_job

log = logging.getLogger(__name__)
BASELINE = "baseline"  # the kind every other kind is compared with
REBUILD = "rebuild.json"  # a version's artifact: its snapshot and how it was trained (make reproduce)


class NotEnoughData(RuntimeError):
    """Too little curated data to train on; the message names the data set and the days searched."""


def curated_dates(lake: Lake, end: dt.date | str | None = None) -> list[dt.date]:
    dates = layout.partitions(lake, layout.zone("curated", declared_model().dataset))
    return [d for d in dates if end is None or d <= as_date(end)]


def training_dates(lake: Lake, end: dt.date | str | None = None) -> list[dt.date]:
    """The curated days of the model's data set up to ``end`` (every day without one). None at all is not "too
    few days yet" but nothing to train on: NotEnoughData naming the data set, where it was looked for and the days
    searched, so that a training run without data never ends quietly."""
    dates = curated_dates(lake, end)
    if not dates:
        searched = f"up to {as_date(end).isoformat()}" if end else "on any day"
        name = declared_model().dataset
        raise NotEnoughData(
            f"no curated day of data set {name!r} {searched} at "
            f"{lake.uri(layout.zone('curated', name))}: nothing to train on (its ingestion DAG "
            "curates it, for the data dates of include/config/schedule.yaml's window)"
        )
    return dates


def build_training_set(
    lake: Lake,
    run_key: str,
    window_days: int,
    workers: int,
    end: dt.date | str | None = None,
    min_days: int = 3,
    kind: str | None = None,
    shares: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The training set of a run, staged in the lake for a model of ``kind``, its days split by ``shares``
    (validation, test; both default to params.yaml's)."""
    layout.training(run_key)  # refuse an unsafe key before anything is read or written
    train = params_file.load()["train"]
    kind = kind or train["kind"]
    validation_share, test_share = shares or (train["validation_share"], train["test_share"])
    kinds.kind(kind)  # an unknown kind is refused before anything is written
    dates = training_dates(lake, end)
    end_date = as_date(end) if end else dates[-1]
    flights, weather, used = frame.load_window(lake, end_date, window_days)
    if len(used) < min_days:
        raise NotEnoughData(
            f"only {len(used)} curated day(s) of data set {declared_model().dataset!r} in the {window_days} days up "
            f"to {end_date}; "
            f"training needs at least {min_days}"
        )
    ts = F.build(flights, weather, validation_share=validation_share, test_share=test_share)
    meta = write_training_set(lake, layout.training(run_key), ts, shards=workers, kind=kind)
    # the held-out days un-encoded, so that any model (the champion too) can be scored with its own encoding
    test_days = set(ts.split["test"])
    holdout = flights[flights["is_labelled"] & flights["batch_date"].astype(str).isin(test_days)]
    holdout = frame.join_sources(holdout, weather)
    m = declared_model()
    holdout = holdout.assign(**{m.key_field: schema.row_key(holdout, m)})[
        [m.key_field] + ts.spec.numeric + ts.spec.categorical + [m.label.name]
    ]
    lake.write_parquet(holdout.reset_index(drop=True), layout.training(run_key), layout.TRAINING_HOLDOUT)
    # the reference profile monitoring compares live data with (completed with scores at registration)
    train_rows = flights[flights["is_labelled"] & flights["batch_date"].astype(str).isin(set(ts.split["train"]))]
    lake.write_json(
        reference.build(
            frame.join_sources(train_rows, weather),
            ts.spec.numeric,
            ts.spec.categorical,
            ts.split["train"],
            m.label.name,
        ),
        layout.training(run_key),
        layout.TRAINING_PROFILE,
    )
    meta |= {
        "window_days": window_days,
        "validation_share": validation_share,
        "test_share": test_share,
        "window": [used[0].isoformat(), used[-1].isoformat()],
        "days": len(used),
        "run_key": run_key,
    }
    lake.write_json(meta, layout.training(run_key), layout.TRAINING_SPEC)
    log.info(
        "training set %s: %s rows (train/validation/test), fingerprint %s",
        run_key,
        meta["rows"],
        meta["fingerprint"][:12],
    )
    return meta


def train(
    lake: Lake,
    run_key: str,
    workers: int,
    *,
    params: dict[str, Any] | None = None,
    num_boost_round: int = 200,
    threads_per_worker: int = 1,
    hosts: str | None = None,
    timeout_s: float = 1800,
    out_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the model of the kind the training set names, with ``params`` over params.yaml's section of that
    kind: a kind with ``train_rank`` by the Horovod job over ``workers`` processes (or ``hosts``), another in this
    process (``fit``); on success stage the model in the lake and return the job summary.

    Without ``out_dir`` the job's local files (its model before staging, the ranks' status, its log) go to a
    temporary folder removed at the end: the lake holds what later tasks read, and a worker keeps nothing."""
    folder = layout.training(run_key)
    kind = kinds.kind_of(lake.read_json(folder, layout.TRAINING_SPEC))
    module = kinds.kind(kind)
    own = params_file.section(kind)
    values = params_file.load()[own] | {k: v for k, v in (params or {}).items() if k in params_file.SETTINGS[own]}
    if not hasattr(module, "train_rank"):
        return _train_here(lake, run_key, module, values, threads_per_worker)
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix=f"horovod-{run_key}-") as tmp:
            return train(
                lake,
                run_key,
                workers,
                params=values,
                num_boost_round=num_boost_round,
                threads_per_worker=threads_per_worker,
                hosts=hosts,
                timeout_s=timeout_s,
                out_dir=tmp,
                storage_options=storage_options,
            )
    job = Job(
        lake_url=lake.url,
        training_set=layout.training(run_key),
        out_dir=out_dir,
        workers=workers,
        threads_per_worker=threads_per_worker,
        num_boost_round=num_boost_round,
        params=values,
        hosts=hosts,
        kind=kind,
        timeout_s=timeout_s,
        storage_options=storage_options or {},
    )
    res = run_job(job)
    lake.write_bytes(res.model_path.read_bytes(), layout.training(run_key), layout.TRAINING_MODEL)
    summary = {
        "workers": workers,
        "threads_per_worker": threads_per_worker,
        "hosts": hosts or "localhost",
        "rank_hosts": [r.get("host") for r in res.ranks],  # where each rank ran, rank order
        "wall_s": round(res.wall_s, 2),
        "launch_s": round(res.launch_s, 2),
        "train_s": round(max(r["train_s"] for r in res.ranks), 2),
        "max_rss_mb": round(max(r["max_rss_mb"] for r in res.ranks), 1),
        "machines": res.ranks[0]["machines"],
        "num_trees": res.ranks[0].get("num_trees"),
    }
    lake.write_json(summary, layout.training(run_key), layout.TRAINING_JOB)
    return summary


def _train_here(lake: Lake, run_key: str, module, values: dict[str, Any], threads: int) -> dict[str, Any]:
    """A kind trained in one process: its ``fit`` on the staged splits, the model staged whole."""
    import resource
    import time

    folder = layout.training(run_key)
    meta = lake.read_json(folder, layout.TRAINING_SPEC)
    t0 = time.monotonic()
    train = pd.concat(
        [lake.read_parquet(folder, *layout.training_shard(i)) for i in range(meta["shards"])], ignore_index=True
    )
    validation = lake.read_parquet(folder, layout.TRAINING_VALIDATION)
    t1 = time.monotonic()
    model = module.fit(train, validation, kinds.spec_of(meta["spec"]), values)
    train_s = time.monotonic() - t1
    lake.write_bytes(model.to_bytes(), folder, layout.TRAINING_MODEL)
    summary = {
        "workers": 1,
        "threads_per_worker": threads,
        "hosts": "localhost",
        "wall_s": round(time.monotonic() - t0, 2),
        "launch_s": 0.0,
        "train_s": round(train_s, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machines": [],
        "num_trees": None,
    }
    lake.write_json(summary, folder, layout.TRAINING_JOB)
    return summary


def recorded_spec(meta: dict[str, Any]) -> dict[str, Any]:
    """The feature spec a version records (``feature_spec.json``): the training set's, its split and its kind."""
    return meta["spec"] | {"split": meta["split"], "kind": kinds.kind_of(meta)}


def evaluate(lake: Lake, run_key: str) -> dict[str, Any]:
    """Validation and test metrics of the staged model, and its feature importance as its kind measures it."""
    folder = layout.training(run_key)
    model = kinds.staged(lake, run_key)
    out: dict[str, float] = {}
    scores = {}
    parts = {}
    for part in ("validation", "test"):
        df = parts[part] = lake.read_parquet(
            folder, {"validation": layout.TRAINING_VALIDATION, "test": layout.TRAINING_TEST}[part]
        )
        scores[part] = (df[model.spec.label].to_numpy(), model.predict_encoded(df[model.spec.columns]))
        out |= metrics(*scores[part], prefix=f"{part}_")
    if model.kind != BASELINE:
        # the baseline kind on the same split: what the model is worth beyond it (the gate may require a margin)
        meta = lake.read_json(folder, layout.TRAINING_SPEC)
        train = pd.concat(
            [lake.read_parquet(folder, *layout.training_shard(i)) for i in range(meta["shards"])], ignore_index=True
        )
        base = kinds.kind(BASELINE).fit(
            train, parts["validation"], model.spec, params_file.load().get(params_file.section(BASELINE), {})
        )
        lake.write_bytes(base.to_bytes(), folder, layout.TRAINING_BASELINE)
        test = parts["test"]
        out["baseline_test_auc"] = metrics(
            test[model.spec.label].to_numpy(), base.predict_encoded(test[model.spec.columns])
        )["auc"]
    return {"metrics": out, "feature_importance": model.feature_importance(), "validation_scores": scores["validation"]}


def register(
    lake: Lake,
    run_key: str,
    *,
    params: dict[str, Any],
    reason: str,
    dag_run: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Track the run in MLflow and register the model as a new version (the last step, so never partial).
    ``params``: the run's ``model`` parameters (over params.yaml's section of its kind) and ``num_boost_round``."""
    from ..core import registry

    folder = layout.training(run_key)
    meta = lake.read_json(folder, layout.TRAINING_SPEC)
    job = lake.read_json(folder, layout.TRAINING_JOB)
    kind = kinds.kind_of(meta)
    values = params_file.load()[params_file.section(kind)] | dict(params.get("model") or {})
    ev = evaluate(lake, run_key)
    y_val, p_val = ev["validation_scores"]
    profile = reference.complete(
        lake.read_json(folder, layout.TRAINING_PROFILE),
        p_val,
        y_val,
        {k[len("validation_") :]: v for k, v in ev["metrics"].items() if k.startswith("validation_")},
    )
    lake.write_json(profile, folder, layout.TRAINING_PROFILE)
    # the exact training set, kept in the DVC remote before the version exists (a refusal fails the registration)
    snapshot = snapshots.push(lake, folder)
    model_bytes = lake.read_bytes(folder, layout.TRAINING_MODEL)
    rebuild = {  # what make reproduce needs to train this version again
        "snapshot": snapshot,
        "remote": snapshots.remote()[0],
        "fingerprint": meta["fingerprint"],
        "kind": kind,
        "params": values,
        "num_boost_round": params.get("num_boost_round"),
        "workers": job["workers"],
        "threads_per_worker": job["threads_per_worker"],
        "model_sha256": snapshots.sha256(model_bytes),
        "code_version": registry.code_version(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / layout.TRAINING_MODEL
        model.write_bytes(model_bytes)
        reg = registry.log_training_run(
            model_path=model,
            params={
                **kinds.kind(kind).tracked_params(values, threads=job["threads_per_worker"]),
                "kind": kind,
                "num_boost_round": params.get("num_boost_round"),
                "parameters": params.get("parameters") or "params.yaml",  # or the tuning study they came from
                "window_days": meta["window_days"],
                # the split's shares (a run staged before they were parameters: the defaults it was split with)
                "validation_share": meta.get("validation_share", 0.15),
                "test_share": meta.get("test_share", 0.15),
                "workers": job["workers"],
                "hosts": job["hosts"],
            },
            metrics={
                **ev["metrics"],
                "wall_s": job["wall_s"],
                "launch_s": job["launch_s"],
                "train_s": job["train_s"],
                "max_rss_mb": job["max_rss_mb"],
                **{f"rows_{k}": v for k, v in meta["rows"].items()},
            },
            tags={
                "data_fingerprint": meta["fingerprint"],
                "data_snapshot": snapshot,
                "data_window": "..".join(meta["window"]),
                "reason": reason,
                "run_key": run_key,
                "dag_run": dag_run or "",
                "lake": lake.uri(folder),
            },
            feature_spec=recorded_spec(meta),
            feature_importance=ev["feature_importance"],
            register_model=kinds.kind(kinds.kind_of(meta)).register,
            extra_artifacts={layout.TRAINING_PROFILE: profile, REBUILD: rebuild},
            settings=settings,
        )
    result = {
        "run_id": reg.run_id,
        "model_name": reg.model_name,
        "version": reg.version,
        "model_uri": reg.model_uri,
        "test_auc": round(ev["metrics"]["test_auc"], 4),
        "validation_auc": round(ev["metrics"]["validation_auc"], 4),
        "fingerprint": meta["fingerprint"],
        "feature_importance": ev["feature_importance"],
    }
    lake.write_json(result, folder, layout.TRAINING_REGISTERED)
    return result
