"""The evaluation gate: a candidate against the current champion on the same, most recent held-out days.

Rules are registered functions (``@rule``) in the order they are written here; each reads its thresholds from
``include/config/gate.yaml`` (the one home of their values, overridable per run) and returns a ``Check``, or
None where it does not apply (the champion rules for a first model). A new rule is one function here and its
keys in gate.yaml; the train_model form offers every scalar key of gate.yaml as ``gate_<key>``.

  ``auc_floor``        candidate AUC >= ``min_auc``
  ``calibration``      candidate expected calibration error <= ``max_ece``
  ``auc_vs_champion``  candidate AUC >= champion AUC - ``max_auc_drop``              (only with a champion)
  ``slices``           per origin and per carrier slice with >= ``min_slice_rows`` flights:
                       candidate AUC >= champion AUC - ``max_slice_auc_drop``        (only with a champion)
  ``beats_baseline``   candidate AUC >= the baseline kind's AUC + ``min_auc_over_baseline``, the baseline fitted
                       on the candidate's own training split (only when set, and for a candidate of another kind)
The first model passes on the floor (and calibration) alone.

``run`` is the gate of a training run: the candidate (its staged model) and the champion (from the registry)
scored on the run's held-out days, the decision, an HTML report, the registry's alias and tags.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..core import layout, rollouts, schema
from ..core.config import Settings
from ..core.lake import Lake
from ..core.metrics import metrics
from .config import GateConfig

log = logging.getLogger(__name__)


@dataclass
class Check:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str = ""


@dataclass
class GateDecision:
    passed: bool
    checks: list[Check]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    slices: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        head = "PASSED" if self.passed else "FAILED: " + ", ".join(c.name for c in self.failed)
        lines = [f"gate {head}"]
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            lines.append(f"  {mark} {c.name}: {c.detail}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failed"] = [c.name for c in self.failed]
        return d


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return metrics(y, p)["auc"]


def slice_table(
    frame: pd.DataFrame, y: np.ndarray, cand: np.ndarray, champ: np.ndarray | None, columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    rows = []
    for col in columns:
        for value, idx in frame.groupby(col, observed=True).indices.items():
            yy = y[idx]
            row = {"column": col, "value": str(value), "rows": int(len(idx)), "positive_rate": float(yy.mean())}
            enough_classes = 0 < yy.sum() < len(yy)
            row["candidate_auc"] = _auc(yy, cand[idx]) if enough_classes else float("nan")
            row["champion_auc"] = (
                (_auc(yy, champ[idx]) if enough_classes else float("nan")) if champ is not None else None
            )
            rows.append(row)
    return rows


@dataclass
class Evidence:
    """What every rule may look at: the held-out rows, the candidate's and the champion's scores and metrics,
    the slice table."""

    frame: pd.DataFrame
    y: np.ndarray
    candidate: dict[str, float]
    champion: dict[str, float] | None
    slices: list[dict[str, Any]]
    baseline: dict[str, float] | None = None  # the baseline kind's metrics on the same rows, where it was fitted


Rule = Callable[[Evidence, GateConfig], "Check | None"]
RULES: dict[str, Rule] = {}


def rule(name: str):
    """Register a gate rule under ``name`` (its checks appear in this order in every decision)."""

    def register(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return register


@rule("auc_floor")
def auc_floor(ev: Evidence, cfg: GateConfig) -> Check:
    auc = ev.candidate["auc"]
    return Check(
        "auc_floor", auc >= cfg.min_auc, auc, cfg.min_auc, f"candidate AUC {auc:.4f} vs floor {cfg.min_auc:.4f}"
    )


@rule("calibration")
def calibration(ev: Evidence, cfg: GateConfig) -> Check:
    ece = ev.candidate["ece"]
    return Check(
        "calibration",
        ece <= cfg.max_ece,
        ece,
        cfg.max_ece,
        f"expected calibration error {ece:.4f} vs max {cfg.max_ece:.4f}",
    )


@rule("auc_vs_champion")
def auc_vs_champion(ev: Evidence, cfg: GateConfig) -> Check | None:
    if ev.champion is None:
        return None
    drop = ev.champion["auc"] - ev.candidate["auc"]
    return Check(
        "auc_vs_champion",
        drop <= cfg.max_auc_drop,
        -drop,
        -cfg.max_auc_drop,
        f"candidate AUC {ev.candidate['auc']:.4f} vs champion {ev.champion['auc']:.4f} "
        f"(change {-drop:+.4f}, tolerance -{cfg.max_auc_drop:.4f})",
    )


@rule("slices")
def slices(ev: Evidence, cfg: GateConfig) -> Check | None:
    if ev.champion is None:
        return None
    judged = [
        s
        for s in ev.slices
        if s["rows"] >= cfg.min_slice_rows
        and s["candidate_auc"] == s["candidate_auc"]
        and s["champion_auc"] == s["champion_auc"]
    ]
    regressions = [s for s in judged if s["champion_auc"] - s["candidate_auc"] > cfg.max_slice_auc_drop]
    for s in ev.slices:
        s["regression"] = s in regressions
    worst = min((s["candidate_auc"] - s["champion_auc"] for s in judged), default=0.0)
    names = ", ".join(
        f"{s['column']}={s['value']} ({s['candidate_auc']:.3f} vs {s['champion_auc']:.3f})" for s in regressions
    )
    return Check(
        "slices",
        not regressions,
        worst,
        -cfg.max_slice_auc_drop,
        f"{len(judged)} slice(s) judged, worst change {worst:+.4f}"
        + (f"; regressions: {names}" if regressions else ""),
    )


@rule("beats_baseline")
def beats_baseline(ev: Evidence, cfg: GateConfig) -> Check | None:
    if cfg.min_auc_over_baseline is None or ev.baseline is None:
        return None
    gain = ev.candidate["auc"] - ev.baseline["auc"]
    return Check(
        "beats_baseline",
        gain >= cfg.min_auc_over_baseline,
        gain,
        cfg.min_auc_over_baseline,
        f"candidate AUC {ev.candidate['auc']:.4f} vs baseline {ev.baseline['auc']:.4f} "
        f"(gain {gain:+.4f}, required {cfg.min_auc_over_baseline:+.4f})",
    )


def decide(
    frame: pd.DataFrame,
    y: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray | None,
    config: GateConfig,
    baseline: np.ndarray | None = None,
) -> GateDecision:
    """Judge ``candidate`` scores (and ``champion`` and ``baseline`` scores on the same rows, where there are) by
    every registered rule."""
    y = np.asarray(y, dtype=float)
    cand_m = metrics(y, candidate)
    champ_m = metrics(y, champion) if champion is not None else None
    table = slice_table(
        frame, y, np.asarray(candidate), None if champion is None else np.asarray(champion), tuple(config.slice_columns)
    )
    ev = Evidence(frame, y, cand_m, champ_m, table, metrics(y, baseline) if baseline is not None else None)
    checks = [c for c in (fn(ev, config) for fn in RULES.values()) if c is not None]
    return GateDecision(
        passed=all(c.passed for c in checks),
        checks=checks,
        candidate=cand_m,
        champion=champ_m,
        slices=table,
        config=config.as_dict(),
    )


def run(
    lake: Lake, run_key: str, overrides: dict[str, Any] | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """The gate of a training run: its candidate (this run's registered version) against the champion on the
    run's held-out days; on a pass it becomes the challenger, unless a rollout of another version runs: then it
    waits, queued (``queued_behind``: that version; deploy_model, one run at a time, makes it the challenger when
    its turn comes), and the running rollout keeps its challenger. The decision, every check and an HTML report go to
    ``reports/gate/<run_key>/`` and to the MLflow run. A registry that cannot answer fails the gate (raised):
    the champion comparison is never skipped on an error."""
    from .. import kinds
    from ..core import registry
    from .report import gate_report

    folder = layout.training(run_key)
    reg = lake.read_json(folder, layout.TRAINING_REGISTERED)
    meta = lake.read_json(folder, layout.TRAINING_SPEC)
    cfg = GateConfig(**(overrides or {}))
    holdout = lake.read_parquet(folder, layout.TRAINING_HOLDOUT)
    candidate = kinds.staged(lake, run_key)
    y = holdout[candidate.spec.label].to_numpy()
    p_cand = candidate.predict(holdout)
    champ = registry.alias_version("champion", settings)
    p_champ = None
    if champ and champ["version"] != reg["version"]:
        p_champ = kinds.load_version(champ["version"], settings).predict(holdout)
    p_base = None
    if cfg.min_auc_over_baseline is not None and lake.exists(folder, layout.TRAINING_BASELINE):
        base = kinds.kind("baseline").from_staged(lake.read_bytes(folder, layout.TRAINING_BASELINE), candidate.spec)
        p_base = base.predict(holdout)
    decision = decide(holdout, y, p_cand, p_champ, cfg, p_base)
    d = decision.to_dict() | {
        "version": reg["version"],
        "run_id": reg["run_id"],
        "champion_version": champ["version"] if p_champ is not None else None,
        "holdout_days": meta["split"]["test"],
        "run_key": run_key,
        "data_date": meta["window"][-1],
    }
    running = rollouts.running_canary(rollouts.current(lake)) if decision.passed else None
    if running is not None and running != str(reg["version"]):
        d["queued_behind"] = running  # one rollout at a time: deploy_model starts this one when that one ends
    report_dir = layout.gate(run_key)
    curves = {f"candidate v{reg['version']}": p_cand}
    if p_champ is not None:
        curves[f"champion v{champ['version']}"] = p_champ
    html = gate_report(
        f"Evaluation gate: {reg['model_name']} v{reg['version']}",
        d,
        y,
        curves,
        reg.get("feature_importance") or {},
        {
            "held-out days": ", ".join(meta["split"]["test"]),
            schema.model().rows: len(holdout),  # "flights": the held-out rows
            "champion": f"v{champ['version']}" if p_champ is not None else "none (first model)",
            "data fingerprint": meta["fingerprint"][:16],
        },
    )
    lake.write_bytes(html.encode(), report_dir, layout.GATE_REPORT)
    d["report"] = lake.uri(report_dir, layout.GATE_REPORT)
    lake.write_json(d, report_dir, layout.GATE_DECISION)
    lake.write_json(d, *layout.gate_latest())
    registry.log_to_run(
        reg["run_id"],
        {
            "gate_passed": float(decision.passed),
            "gate_candidate_auc": decision.candidate["auc"],
            **({"gate_champion_auc": decision.champion["auc"]} if decision.champion else {}),
        },
        {"gate/report.html": html},
        {"gate/decision.json": d},
        settings,
    )
    registry.tag_version(
        reg["version"], {"gate": "passed" if decision.passed else "failed", "gate_report": d["report"]}, settings
    )
    if decision.passed and "queued_behind" not in d:
        registry.set_alias("challenger", reg["version"], settings)
    elif decision.passed:
        log.info("v%s waits: the rollout of v%s runs (its challenger stays)", reg["version"], d["queued_behind"])
    log.info("%s", decision.summary())
    return d
