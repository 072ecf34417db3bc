"""``make report``: what a change does to the model, for its pull request.

The branch's model (``build/model``, made by ``dvc repro``) and the default branch's (fetched by DVC at that
revision) are scored on the same rows, the branch's held-out days, and judged by the gate's rules as
``train_model`` judges a candidate against the champion (``include/config/gate.yaml``); the baseline kind fitted
on the branch's split too, where the gate asks for it. ``report.md`` holds the verdict with each check's numbers,
both models' metrics on those rows, the metrics and parameters diff DVC computed (``dvc metrics diff``, ``dvc
params diff``: given as Markdown files), the deployment's latest tuning study beside this branch's parameters
(where the lake holds one) and the ROC, calibration and feature-importance plots as PNG files beside it.
``report.json`` holds the same numbers. The exit status is 1 when the gate fails, so CI can block the merge.

    python -m include.mlops.repro report --base-model DIR|--no-base-model WHY --metrics-diff F --params-diff F
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import stages

IMAGES = "report-images"


def compare(model_dir: Path, base_dir: Path | None) -> dict[str, Any]:
    """The gate's decision for the branch's model against the base's (None: no model on the base; the first
    model's rules) on the branch's held-out rows, with what each side is."""
    from ..evaluate.config import GateConfig
    from ..evaluate.gate import decide

    model, holdout, meta, base_kind = stages.staged_model(model_dir)
    y = holdout[model.spec.label].to_numpy().astype(float)
    p = model.predict(holdout)
    p_base_kind = base_kind.predict(holdout) if base_kind is not None else None
    p_champ, champ_meta = None, None
    if base_dir is not None:
        champ, _, champ_meta, _ = stages.staged_model(base_dir)
        p_champ = champ.predict(holdout)  # scored with its own encoding, on the branch's held-out rows
    decision = decide(holdout, y, p, p_champ, GateConfig(), p_base_kind)
    return {
        "decision": decision.to_dict(),
        "holdout_days": meta["split"]["test"],
        "rows": len(holdout),
        "candidate": _side(meta, model.kind),
        "base": _side(champ_meta, champ_meta and champ_meta.get("kind")) if champ_meta else None,
        "scores": {"y": y, "candidate": p, **({"base": p_champ} if p_champ is not None else {})},
        "importance": json.loads((model_dir / stages.EVALUATION).read_text())["feature_importance"],
    }


def latest_study(lake=None) -> dict[str, Any]:
    """The deployment's latest tuning study (``tune_model``'s ``tuning/latest.json`` in the lake ``MLOPS_LAKE_URL``
    names, the local lake by default) beside this branch's parameters (its ``params.yaml``): ``where``, then
    ``result`` (None: no study in that lake) or ``error`` (the lake did not answer: said, never read as no study).
    The report shows it; it never changes the verdict."""
    from ..core import layout
    from ..core.lake import lake_from_settings
    from ..train import params as params_file
    from ..train import tune

    branch = params_file.load()
    kind = branch["train"]["kind"]
    section = params_file.KINDS[kind]  # lightgbm: lgbm
    out: dict[str, Any] = {"kind": kind, "section": section, "branch": branch[section], "where": None, "result": None}
    try:
        lake = lake or lake_from_settings()
        out["where"] = lake.uri(*layout.tuning_latest())
        out["result"] = tune.latest(lake)
    except Exception as exc:  # noqa: BLE001 - an unreachable or unreadable lake is reported as such
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _study_lines(study: dict[str, Any]) -> list[str]:
    """The report's section on the latest tuning study (``latest_study``)."""
    lines = ["## Latest tuning study", ""]
    where = f"`{study['where']}`" if study["where"] else "the lake"
    if study.get("error"):
        return lines + [f"The latest study could not be read from {where}: {study['error']}", ""]
    r = study["result"]
    if r is None:
        return lines + [f"No tuning study has finished in {where} (tune_model writes it there).", ""]
    lines.append(
        f"Study `{r['study_id']}` ({r['kind']}, finished {r['finished_at'][:16].replace('T', ' ')} UTC): best "
        f"validation log-loss {_fmt(r['best']['value'])} (trial {r['best']['number']}) against "
        f"{_fmt(r['defaults']['value'])} for the parameters it started from; "
        + ("beats them by the margin " if r.get("beats_defaults") else "not by the margin ")
        + f"{r['margin']}."
    )
    if r["kind"] != study["kind"]:
        return lines + ["", f"It searched {r['kind']!r}; this branch trains {study['kind']!r}.", ""]
    names = sorted(set(study["branch"]) | set(r["best"]["params"]))
    rows = [
        {
            "parameter": f"{study['section']}.{k}",
            "this branch": study["branch"].get(k),
            "study's best": r["best"]["params"].get(k),
            "study's start": r["defaults"]["params"].get(k),
        }
        for k in names
    ]
    return lines + ["", _table(rows, ["parameter", "this branch", "study's best", "study's start"])]


def _side(meta: dict[str, Any], kind: str | None) -> dict[str, Any]:
    return {
        "kind": kind or meta.get("kind") or "lightgbm",
        "fingerprint": meta["fingerprint"],
        "window": meta["window"],
        "holdout_days": meta["split"]["test"],
    }


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return "–" if v != v else f"{v:.4f}"
    return "–" if v is None else str(v).replace("|", "\\|")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |\n" for r in rows)


def render(
    result: dict[str, Any],
    base_rev: str,
    metrics_diff: str,
    params_diff: str,
    images: list[str],
    study: dict[str, Any] | None = None,
) -> str:
    d = result["decision"]
    verdict = "PASSED" if d["passed"] else "FAILED: " + ", ".join(d["failed"])
    base = result["base"]
    lines = [
        f"# Model report: this branch against `{base_rev}`",
        "",
        f"**Gate {verdict}**",
        "",
        f"- held-out days: {', '.join(result['holdout_days'])} ({result['rows']} rows, this branch's)",
        f"- this branch: {result['candidate']['kind']}, trained on {' to '.join(result['candidate']['window'])}, "
        f"data fingerprint `{result['candidate']['fingerprint'][:12]}`",
        (
            f"- `{base_rev}`: {base['kind']}, trained on {' to '.join(base['window'])}, data fingerprint "
            f"`{base['fingerprint'][:12]}`"
            if base
            else f"- `{base_rev}`: no model (its dvc.lock has none): judged as a first model, on the floor and "
            "calibration alone"
        ),
    ]
    if base and base["holdout_days"] != result["holdout_days"]:
        lines.append(
            f"- the snapshot changed: `{base_rev}`'s model is scored on this branch's held-out days, not its own "
            f"({', '.join(base['holdout_days'])})"
        )
    lines += ["", "## Gate checks", "", _table(d["checks"], ["name", "passed", "value", "threshold", "detail"])]
    models = [{"model": "this branch", **d["candidate"]}]
    if d["champion"]:
        models.append({"model": f"`{base_rev}`", **d["champion"]})
    lines += [
        "## Held-out metrics, same rows",
        "",
        _table(models, ["model", "auc", "logloss", "brier", "ece", "positive_rate", "rows"]),
        f"## Metrics diff (`dvc metrics diff {base_rev}`)",
        "",
        metrics_diff.strip() or "No metric changed.",
        "",
        f"## Parameters diff (`dvc params diff {base_rev}`)",
        "",
        params_diff.strip() or "No parameter changed.",
        "",
        *(_study_lines(study) if study is not None else []),
        "## Plots",
        "",
        *[f"![{Path(i).stem}]({i})" for i in images],
        "",
    ]
    return "\n".join(lines)


def write(
    out: Path,
    model_dir: Path,
    base_dir: Path | None,
    base_rev: str,
    metrics_diff: str,
    params_diff: str,
) -> dict[str, Any]:
    """``report.md``, its images (``report-images/`` beside it) and ``report.json``; returns the decision."""
    from ..evaluate.report import importance_png, roc_and_calibration

    result = compare(model_dir, base_dir)
    s = result.pop("scores")
    curves = {"this branch": s["candidate"], **({base_rev: s["base"]} if "base" in s else {})}
    roc, cal = roc_and_calibration(s["y"], curves)
    folder = out.parent / IMAGES
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for name, data in (("roc", roc), ("calibration", cal), ("importance", importance_png(result["importance"]))):
        (folder / f"{name}.png").write_bytes(data)
        images.append(f"{IMAGES}/{name}.png")
    result["study"] = latest_study()
    out.write_text(render(result, base_rev, metrics_diff, params_diff, images, result["study"]))
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=_json) + "\n")
    return result["decision"]


def _json(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(type(v))
