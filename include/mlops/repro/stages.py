"""The stages of ``dvc.yaml``, each the DAGs' own code on files DVC versions:

``snapshot``  the days ``params.yaml``'s ``snapshot:`` names, of every declared data set, from its declared source
              through ingestion's own steps (drop, extract, validate with the suites, curate) in a scratch lake;
              the curated zone is the stage's output (``data/snapshot/curated/<data set>/date=.../``) with a
              manifest of each day's rows and checksum (a day the suites reject is left out and named there, as
              ingestion would quarantine it)
``train``     ``train_model``'s training-set builder (window ``train.window_days`` ending on ``snapshot.last``,
              its split shares, its kind) and training function (the Horovod job with ``train.workers`` ranks:
              the worker count changes the model), then training's evaluation, which stages the baseline kind;
              the training folder is the output (``build/model/``)
``evaluate``  the staged model on the held-out days: ``build/metrics.json`` (what ``dvc metrics`` shows), the
              gate's rules that need no champion (``build/gate.json``), and ROC, calibration and feature-importance
              data for ``dvc plots`` (``build/plots/``)

Each stage runs in a scratch ``MLOPS_HOME`` and reads nothing but its declared inputs: the variables that would
change what a stage makes without DVC seeing it (another settings folder, params file, suites) are refused.

    python -m include.mlops.repro snapshot|train|evaluate     # what dvc.yaml runs, from the project's root
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core import layout
from ..core.lake import Lake, as_date

log = logging.getLogger(__name__)

RUN_KEY = "dvc"  # the training folder's key in the stages' scratch lakes
SNAPSHOT_DIR = Path("data/snapshot")
MODEL_DIR = Path("build/model")
METRICS = Path("build/metrics.json")
GATE = Path("build/gate.json")
PLOTS = Path("build/plots")
MANIFEST = "manifest.json"
EVALUATION = "evaluation.json"  # training's evaluation of the staged model, in its folder

# what would change a stage's output without DVC seeing it: refused, by name
REFUSED_ENV = {
    "MLOPS_CONFIG_DIR": "the settings folder (dvc.yaml tracks include/config and params.yaml)",
    "MLOPS_DATASETS": "another datasets.yaml",
    "MLOPS_PARAMS": "another params.yaml (dvc.yaml tracks params.yaml)",
    "MLOPS_EXPECTATIONS_DIR": "other suites (dvc.yaml tracks expectations/)",
    "MLOPS_TRAIN_MIN_DAYS": "the training's minimum days (params.yaml's train.min_days)",
    "MLOPS_HOROVOD_ENV": "the Horovod ranks' environment",
}


class StageError(RuntimeError):
    """A stage cannot make its output; the message names the stage, the input and the value."""


def check_environment(env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    bad = [f"{k}={env[k]!r} ({why})" for k, why in REFUSED_ENV.items() if env.get(k)]
    if bad:
        raise StageError(
            "the DVC stages read only what dvc.yaml declares; unset " + "; ".join(bad) + " and change the tracked "
            "file instead"
        )


def snapshot_days(params: dict[str, Any]) -> list[dt.date]:
    """The snapshot's days from ``params.yaml``'s ``snapshot:`` (first and last, at most a year)."""
    snap = params.get("snapshot")
    if not snap:
        raise StageError("params.yaml has no snapshot: section (first, last: the days dvc repro trains on)")
    first, last = as_date(snap["first"]), as_date(snap["last"])
    if last < first or (last - first).days > 365:
        raise StageError(f"params.yaml snapshot: first {first} to last {last} is not a window of 1 to 366 days")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@contextmanager
def scratch_home() -> Iterator[Path]:
    """A scratch MLOPS_HOME (and lake) for one stage, removed at its end: a stage touches no deployment's state."""
    old = {k: os.environ.get(k) for k in ("MLOPS_HOME", "MLOPS_LAKE_URL")}
    with tempfile.TemporaryDirectory(prefix="mlops-stage-") as tmp:
        os.environ["MLOPS_HOME"] = tmp
        (Path(tmp) / "lake").mkdir()
        os.environ["MLOPS_LAKE_URL"] = (Path(tmp) / "lake").as_uri()
        try:
            yield Path(tmp)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _replace_dir(src: Path, dst: Path) -> None:
    """``src`` becomes ``dst`` whole (the old one removed after): a stage's output is never half written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    staged = dst.with_name(f".{dst.name}.new")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(src, staged)
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    staged.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def snapshot(out: Path = SNAPSHOT_DIR) -> dict[str, Any]:
    """The curated days of the snapshot, made by ingestion's own steps from the declared sources."""
    from ..core.config import Settings
    from ..core.schema import dataset, ingestion_groups
    from ..ingest import ingestion
    from ..ingest.validation import BatchRejected
    from ..simulate.upstream import NoRows, Upstream
    from ..train import params as params_file

    check_environment()
    days = snapshot_days(params_file.load())
    names = [name for group in ingestion_groups().values() for name in group]
    manifest: dict[str, Any] = {"first": days[0].isoformat(), "last": days[-1].isoformat(), "datasets": {}}
    with scratch_home() as home:
        lake, settings = Lake((home / "lake").as_uri()), Settings.from_env()
        up = Upstream(lake)
        for name in names:
            kept: dict[str, Any] = {}
            left: dict[str, str] = {}
            for d in days:
                try:
                    up.publish(d, name)
                except NoRows as exc:  # a day the source has none of (a closed shop): nothing to curate
                    left[d.isoformat()] = f"no rows at the source: {exc}"
                    continue
                b = ingestion.batch(dataset(name), d, run="snapshot")
                staged = ingestion.extract(lake, b)
                try:
                    ingestion.check(lake, b, settings, staged["sha256"])
                except BatchRejected as exc:  # quarantined, as ingestion would: the day is not in the snapshot
                    left[d.isoformat()] = str(exc).splitlines()[0]
                    log.warning("snapshot: %s", exc)
                    continue
                info = ingestion.curate(lake, b, staged["sha256"])
                kept[d.isoformat()] = {"rows": info["rows"], "sha256": info["sha256"]}
            if not kept:
                raise StageError(f"snapshot: no day of data set {name!r} from {days[0]} to {days[-1]} was curated")
            manifest["datasets"][name] = {"days": kept, "left_out": left}
        built = home / "out"
        shutil.copytree(home / "lake" / "curated", built / "curated")
        (built / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _replace_dir(built, out)
    log.info("snapshot: %s", {k: len(v["days"]) for k, v in manifest["datasets"].items()})
    return manifest


@contextmanager
def _lake_over(snapshot_dir: Path) -> Iterator[Lake]:
    """A scratch lake whose curated zone is the snapshot's (read in place, never written)."""
    if not (snapshot_dir / "curated").is_dir():
        raise StageError(f"no snapshot at {snapshot_dir} (dvc repro snapshot, or dvc pull, makes it)")
    with scratch_home() as home:
        root = home / "lake"
        (root / "curated").symlink_to((snapshot_dir / "curated").resolve(), target_is_directory=True)
        yield Lake(root.as_uri())


def train(snapshot_dir: Path = SNAPSHOT_DIR, out: Path = MODEL_DIR) -> dict[str, Any]:
    """``train_model``'s training set, training and evaluation on the snapshot; the training folder to ``out``."""
    from ..train import params as params_file
    from ..train import pipeline

    check_environment()
    p = params_file.load()
    t = p["train"]
    last = snapshot_days(p)[-1]
    with _lake_over(snapshot_dir) as lake:
        meta = pipeline.build_training_set(
            lake, RUN_KEY, t["window_days"], t["workers"], end=last, min_days=t["min_days"], kind=t["kind"]
        )
        job = pipeline.train(
            lake,
            RUN_KEY,
            t["workers"],
            num_boost_round=t["num_boost_round"],
            threads_per_worker=t["threads_per_worker"],
            timeout_s=t["timeout_minutes"] * 60,
        )
        ev = pipeline.evaluate(lake, RUN_KEY)  # stages the baseline kind beside the model
        folder = Path(lake.path(layout.training(RUN_KEY)))
        (folder / layout.TRAINING_JOB).write_text(json.dumps(_stable(job), indent=2, sort_keys=True) + "\n")
        (folder / EVALUATION).write_text(
            json.dumps({"metrics": ev["metrics"], "feature_importance": ev["feature_importance"]}, indent=2) + "\n"
        )
        _replace_dir(folder, out)
    log.info("train: %s rows, fingerprint %s", meta["rows"], meta["fingerprint"][:12])
    return meta


def _stable(job: dict[str, Any]) -> dict[str, Any]:
    """The job's summary without what differs from run to run (times, memory): the output's hash says whether the
    model changed, not how long it took."""
    return {k: v for k, v in job.items() if k in ("workers", "threads_per_worker", "hosts", "num_trees")}


def staged_model(model_dir: Path):
    """(the model a train stage made, its held-out rows, its training set's meta, the baseline kind or None)."""
    from .. import kinds

    meta = json.loads((model_dir / layout.TRAINING_SPEC).read_text())
    spec = kinds.spec_of(meta["spec"])
    model = kinds.kind(kinds.kind_of(meta)).from_staged((model_dir / layout.TRAINING_MODEL).read_bytes(), spec)
    import pandas as pd

    holdout = pd.read_parquet(model_dir / layout.TRAINING_HOLDOUT)
    base = None
    if (model_dir / layout.TRAINING_BASELINE).exists():
        base = kinds.kind("baseline").from_staged((model_dir / layout.TRAINING_BASELINE).read_bytes(), spec)
    return model, holdout, meta, base


def evaluate(model_dir: Path = MODEL_DIR, metrics_out: Path = METRICS, gate_out: Path = GATE, plots: Path = PLOTS):
    """Metrics, the gate's rules that need no champion, and plot data of the staged model on its held-out days."""
    import numpy as np
    from sklearn.metrics import roc_curve

    from ..core.metrics import calibration_curve, metrics
    from ..evaluate.config import GateConfig
    from ..evaluate.gate import decide

    check_environment()
    model, holdout, meta, base = staged_model(model_dir)
    evaluation = json.loads((model_dir / EVALUATION).read_text())
    y = holdout[model.spec.label].to_numpy().astype(float)
    p = model.predict(holdout)
    p_base = base.predict(holdout) if base is not None else None
    decision = decide(holdout, y, p, None, GateConfig(), p_base)
    out = {
        "test": metrics(y, p),
        "validation": {k[len("validation_") :]: v for k, v in evaluation["metrics"].items() if "validation_" in k},
        "gate_passed": int(decision.passed),
        "rows": meta["rows"],
    }
    if p_base is not None:
        out["baseline_test"] = metrics(y, p_base)
    _write_json(metrics_out, _rounded(out))
    _write_json(gate_out, decision.to_dict() | {"holdout_days": meta["split"]["test"], "kind": model.kind})
    fpr, tpr, _ = roc_curve(y, p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))  # a plot, not every threshold
    plots.mkdir(parents=True, exist_ok=True)
    _write_json(plots / "roc.json", [{"fpr": round(float(fpr[i]), 5), "tpr": round(float(tpr[i]), 5)} for i in keep])
    _write_json(
        plots / "calibration.json",
        [{"predicted": round(x, 5), "observed": round(o, 5)} for x, o in calibration_curve(y, p)],
    )
    importance = sorted(evaluation["feature_importance"].items(), key=lambda kv: -kv[1])
    _write_json(plots / "importance.json", [{"feature": k, "importance": round(float(v), 4)} for k, v in importance])
    log.info("evaluate: %s", decision.summary())
    return out


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 6)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
