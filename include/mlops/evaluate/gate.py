"""The evaluation gate: a candidate against the current champion on the same, most recent held-out days.

Checks (thresholds in ``include/config/gate.yaml``, overridable per run):
  ``auc_floor``     candidate AUC >= ``min_auc``
  ``calibration``   candidate expected calibration error <= ``max_ece``
  ``auc_vs_champion``  candidate AUC >= champion AUC - ``max_auc_drop``           (only with a champion)
  ``slices``        per origin and per carrier slice with >= ``min_slice_rows`` flights:
                    candidate AUC >= champion AUC - ``max_slice_auc_drop``        (only with a champion)
The first model passes on the floor (and calibration) alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.config import PROJECT_ROOT, load_yaml_settings
from ..train.lgbm import metrics

GATE_FILE = PROJECT_ROOT / "include" / "config" / "gate.yaml"


@dataclass(frozen=True)
class GateConfig:
    min_auc: float = 0.60
    max_auc_drop: float = 0.01
    max_ece: float = 0.05
    slice_columns: tuple[str, ...] = ("origin", "carrier")
    min_slice_rows: int = 500
    max_slice_auc_drop: float = 0.05

    @classmethod
    def load(cls, path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> "GateConfig":
        return load_yaml_settings(cls, path or GATE_FILE, overrides)


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


def slice_table(frame: pd.DataFrame, y: np.ndarray, cand: np.ndarray, champ: np.ndarray | None,
                columns: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for col in columns:
        for value, idx in frame.groupby(col, observed=True).indices.items():
            yy = y[idx]
            row = {"column": col, "value": str(value), "rows": int(len(idx)), "positive_rate": float(yy.mean())}
            enough_classes = 0 < yy.sum() < len(yy)
            row["candidate_auc"] = _auc(yy, cand[idx]) if enough_classes else float("nan")
            row["champion_auc"] = (_auc(yy, champ[idx]) if enough_classes else float("nan")) if champ is not None else None
            rows.append(row)
    return rows


def decide(frame: pd.DataFrame, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray | None,
           config: GateConfig) -> GateDecision:
    """Judge ``candidate`` scores (and ``champion`` scores on the same rows, if any) against ``config``."""
    y = np.asarray(y, dtype=float)
    cand_m = metrics(y, candidate)
    champ_m = metrics(y, champion) if champion is not None else None
    checks = [
        Check("auc_floor", cand_m["auc"] >= config.min_auc, cand_m["auc"], config.min_auc,
              f"candidate AUC {cand_m['auc']:.4f} vs floor {config.min_auc:.4f}"),
        Check("calibration", cand_m["ece"] <= config.max_ece, cand_m["ece"], config.max_ece,
              f"expected calibration error {cand_m['ece']:.4f} vs max {config.max_ece:.4f}"),
    ]
    slices = slice_table(frame, y, np.asarray(candidate), None if champion is None else np.asarray(champion),
                         config.slice_columns)
    if champ_m is not None:
        drop = champ_m["auc"] - cand_m["auc"]
        checks.append(Check("auc_vs_champion", drop <= config.max_auc_drop, cand_m["auc"] - champ_m["auc"],
                            -config.max_auc_drop,
                            f"candidate AUC {cand_m['auc']:.4f} vs champion {champ_m['auc']:.4f} "
                            f"(change {-drop:+.4f}, tolerance -{config.max_auc_drop:.4f})"))
        judged = [s for s in slices if s["rows"] >= config.min_slice_rows
                  and s["candidate_auc"] == s["candidate_auc"] and s["champion_auc"] == s["champion_auc"]]
        regressions = [s for s in judged if s["champion_auc"] - s["candidate_auc"] > config.max_slice_auc_drop]
        for s in slices:
            s["regression"] = s in regressions
        worst = min((s["candidate_auc"] - s["champion_auc"] for s in judged), default=0.0)
        names = ", ".join(f"{s['column']}={s['value']} ({s['candidate_auc']:.3f} vs {s['champion_auc']:.3f})"
                          for s in regressions)
        checks.append(Check("slices", not regressions, worst, -config.max_slice_auc_drop,
                            f"{len(judged)} slice(s) judged, worst change {worst:+.4f}"
                            + (f"; regressions: {names}" if regressions else "")))
    return GateDecision(passed=all(c.passed for c in checks), checks=checks, candidate=cand_m, champion=champ_m,
                        slices=slices, config=asdict(config))
