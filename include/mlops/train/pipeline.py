"""The training lifecycle as plain functions: training set -> Horovod job -> evaluation -> registry.

Everything a step hands to the next lives in the lake under ``training/<run_key>/`` (training set shards,
``spec.json``, the model once whole), so each step can run on a different worker.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Any

from . import features as F
from ..core import profile as reference
from ..core.config import Settings
from ..core.lake import Lake, UnsafePath, as_date, segments
from . import lgbm
from .distributed import Job, write_training_set
from .launch import run_job

log = logging.getLogger(__name__)


class NotEnoughData(RuntimeError):
    pass


def training_folder(run_key: str) -> str:
    """``training/<run_key>``; the key must be one safe path segment (``.``, ``..``, empty or ``a/b`` never reach
    the lake, where staging a training set first deletes this folder)."""
    if len(segments(run_key)) != 1:
        raise UnsafePath(f"a run key is one path segment, not {run_key!r}")
    return f"training/{run_key}"


def curated_dates(lake: Lake, end: dt.date | str | None = None) -> list[dt.date]:
    dates = lake.partitions("curated", "flights")
    return [d for d in dates if end is None or d <= as_date(end)]


def build_training_set(lake: Lake, run_key: str, window_days: int, workers: int,
                       end: dt.date | str | None = None, min_days: int = 3) -> dict[str, Any]:
    training_folder(run_key)  # refuse an unsafe key before anything is read or written
    dates = curated_dates(lake, end)
    if not dates:
        raise NotEnoughData(f"no curated flights at {lake.uri('curated', 'flights')}")
    end_date = as_date(end) if end else dates[-1]
    flights, weather, used = F.load_window(lake, end_date, window_days)
    if len(used) < min_days:
        raise NotEnoughData(f"only {len(used)} curated day(s) in the {window_days} days up to {end_date}; "
                            f"training needs at least {min_days}")
    ts = F.build(flights, weather)
    meta = write_training_set(lake, training_folder(run_key), ts, shards=workers)
    # the held-out days un-encoded, so that any model (the champion too) can be scored with its own encoding
    test_days = set(ts.split["test"])
    holdout = flights[flights["is_labelled"] & flights["batch_date"].astype(str).isin(test_days)]
    holdout = F.join_weather(holdout, weather)
    holdout = holdout.assign(flight_key=F.flight_key(holdout))[
        ["flight_key"] + ts.spec.numeric + ts.spec.categorical + ["label"]]
    lake.write_parquet(holdout.reset_index(drop=True), training_folder(run_key), "holdout.parquet")
    # the reference profile monitoring compares live data with (completed with scores at registration)
    train_rows = flights[flights["is_labelled"] & flights["batch_date"].astype(str).isin(set(ts.split["train"]))]
    lake.write_json(reference.build(F.join_weather(train_rows, weather), ts.spec.numeric, ts.spec.categorical,
                                    ts.split["train"]), training_folder(run_key), "profile.json")
    meta |= {"window_days": window_days, "window": [used[0].isoformat(), used[-1].isoformat()],
             "days": len(used), "run_key": run_key}
    lake.write_json(meta, training_folder(run_key), "spec.json")
    log.info("training set %s: %s rows (train/validation/test), fingerprint %s", run_key, meta["rows"],
             meta["fingerprint"][:12])
    return meta


def train(lake: Lake, run_key: str, workers: int, *, params: dict[str, Any] | None = None,
          num_boost_round: int = 200, threads_per_worker: int = 1, hosts: str | None = None,
          timeout_s: float = 1800, out_dir: str | None = None, storage_options: dict[str, Any] | None = None
          ) -> dict[str, Any]:
    """Run the Horovod job; on success stage the model in the lake and return the job summary."""
    out_dir = out_dir or tempfile.mkdtemp(prefix=f"horovod-{run_key}-")
    job = Job(lake_url=lake.url, training_set=training_folder(run_key), out_dir=out_dir, workers=workers,
              threads_per_worker=threads_per_worker, num_boost_round=num_boost_round, params=params or {},
              hosts=hosts, timeout_s=timeout_s, storage_options=storage_options or {})
    res = run_job(job)
    lake.write_bytes(res.model_path.read_bytes(), training_folder(run_key), "model.txt")
    summary = {"workers": workers, "threads_per_worker": threads_per_worker, "hosts": hosts or "localhost",
               "wall_s": round(res.wall_s, 2), "launch_s": round(res.launch_s, 2),
               "train_s": round(max(r["train_s"] for r in res.ranks), 2),
               "max_rss_mb": round(max(r["max_rss_mb"] for r in res.ranks), 1),
               "machines": res.ranks[0]["machines"], "num_trees": res.ranks[0].get("num_trees")}
    lake.write_json(summary, training_folder(run_key), "job.json")
    return summary


def evaluate(lake: Lake, run_key: str) -> dict[str, Any]:
    """Validation and test metrics of the staged model, and its gain-based feature importance."""
    import lightgbm as lgb

    folder = training_folder(run_key)
    meta = lake.read_json(folder, "spec.json")
    booster = lgb.Booster(model_str=lake.read_bytes(folder, "model.txt").decode())
    cols = meta["spec"]["numeric"] + meta["spec"]["categorical"]
    out: dict[str, float] = {}
    scores = {}
    for part in ("validation", "test"):
        df = lake.read_parquet(folder, f"{part}.parquet")
        scores[part] = (df["label"].to_numpy(), booster.predict(df[cols]))
        out |= lgbm.metrics(*scores[part], prefix=f"{part}_")
    gain = booster.feature_importance(importance_type="gain")
    importance = {c: round(float(g), 3) for c, g in zip(booster.feature_name(), gain)}
    return {"metrics": out, "feature_importance": importance, "validation_scores": scores["validation"]}


def register(lake: Lake, run_key: str, *, params: dict[str, Any], reason: str, dag_run: str | None = None,
             settings: Settings | None = None) -> dict[str, Any]:
    """Track the run in MLflow and register the model as a new version (the last step, so never partial)."""
    from ..core import registry

    folder = training_folder(run_key)
    meta = lake.read_json(folder, "spec.json")
    job = lake.read_json(folder, "job.json")
    ev = evaluate(lake, run_key)
    y_val, p_val = ev["validation_scores"]
    profile = reference.complete(lake.read_json(folder, "profile.json"), p_val, y_val,
                                 {k[len("validation_"):]: v for k, v in ev["metrics"].items()
                                  if k.startswith("validation_")})
    lake.write_json(profile, folder, "profile.json")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.txt"
        model.write_bytes(lake.read_bytes(folder, "model.txt"))
        reg = registry.log_training_run(
            model_path=model,
            params={**lgbm.params(params.get("lgbm"), threads=job["threads_per_worker"]),
                    "num_boost_round": params.get("num_boost_round"), "window_days": meta["window_days"],
                    "workers": job["workers"], "hosts": job["hosts"]},
            metrics={**ev["metrics"], "wall_s": job["wall_s"], "launch_s": job["launch_s"],
                     "train_s": job["train_s"], "max_rss_mb": job["max_rss_mb"],
                     **{f"rows_{k}": v for k, v in meta["rows"].items()}},
            tags={"data_fingerprint": meta["fingerprint"], "data_window": "..".join(meta["window"]),
                  "reason": reason, "run_key": run_key, "dag_run": dag_run or "", "lake": lake.uri(folder)},
            feature_spec=meta["spec"] | {"split": meta["split"]},
            feature_importance=ev["feature_importance"],
            extra_artifacts={"profile.json": profile},
            settings=settings,
        )
    result = {"run_id": reg.run_id, "model_name": reg.model_name, "version": reg.version,
              "model_uri": reg.model_uri, "test_auc": round(ev["metrics"]["test_auc"], 4),
              "validation_auc": round(ev["metrics"]["validation_auc"], 4), "fingerprint": meta["fingerprint"]}
    lake.write_json(result, folder, "registered.json")
    return result


def gate(lake: Lake, run_key: str, overrides: dict[str, Any] | None = None,
         settings: Settings | None = None) -> dict[str, Any]:
    """Candidate (this run's version) against the champion on the held-out days; on a pass it becomes the
    challenger. The decision, every check and an HTML report go to ``reports/gate/<run_key>/`` and the run."""
    import lightgbm as lgb

    from ..core import registry
    from ..evaluate.gate import GateConfig, decide
    from ..core.reports import gate_report

    folder = training_folder(run_key)
    reg = lake.read_json(folder, "registered.json")
    meta = lake.read_json(folder, "spec.json")
    cfg = GateConfig.load(overrides=overrides)
    holdout = lake.read_parquet(folder, "holdout.parquet")
    y = holdout["label"].to_numpy()
    cand_spec = F.FeatureSpec.from_dict(meta["spec"])
    candidate = lgb.Booster(model_str=lake.read_bytes(folder, "model.txt").decode())
    p_cand = candidate.predict(cand_spec.encode(holdout)[cand_spec.columns])
    champ = registry.alias_version("champion", settings)
    p_champ = None
    if champ and champ["version"] != reg["version"]:
        booster, spec = registry.load_version(champ["version"], settings)
        ch_spec = F.FeatureSpec.from_dict({k: spec[k] for k in ("numeric", "categorical", "categories", "label")})
        p_champ = booster.predict(ch_spec.encode(holdout)[ch_spec.columns])
    decision = decide(holdout, y, p_cand, p_champ, cfg)
    d = decision.to_dict() | {"version": reg["version"], "run_id": reg["run_id"],
                              "champion_version": champ["version"] if p_champ is not None else None,
                              "holdout_days": meta["split"]["test"], "run_key": run_key,
                              "data_date": meta["window"][-1]}
    report_dir = f"reports/gate/{run_key}"
    curves = {f"candidate v{reg['version']}": p_cand}
    if p_champ is not None:
        curves[f"champion v{champ['version']}"] = p_champ
    ev = evaluate(lake, run_key)
    html = gate_report(f"Evaluation gate: {reg['model_name']} v{reg['version']}", d, y, curves,
                       ev["feature_importance"],
                       {"held-out days": ", ".join(meta["split"]["test"]), "flights": len(holdout),
                        "champion": f"v{champ['version']}" if p_champ is not None else "none (first model)",
                        "data fingerprint": meta["fingerprint"][:16]})
    lake.write_bytes(html.encode(), report_dir, "report.html")
    d["report"] = lake.uri(report_dir, "report.html")
    lake.write_json(d, report_dir, "decision.json")
    lake.write_json(d, "reports", "gate", "latest.json")
    registry.log_to_run(reg["run_id"], {"gate_passed": float(decision.passed),
                                        "gate_candidate_auc": decision.candidate["auc"],
                                        **({"gate_champion_auc": decision.champion["auc"]}
                                           if decision.champion else {})},
                        {"gate/report.html": html}, {"gate/decision.json": d}, settings)
    registry.tag_version(reg["version"], {"gate": "passed" if decision.passed else "failed",
                                          "gate_report": d["report"]}, settings)
    if decision.passed:
        registry.set_alias("challenger", reg["version"], settings)
    log.info("%s", decision.summary())
    return d
