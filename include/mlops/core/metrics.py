"""How good a probability is: AUC, log-loss, Brier score and expected calibration error. One definition for
training, the gate, the canary and monitoring."""

from __future__ import annotations

import numpy as np


def metrics(y: np.ndarray, p: np.ndarray, prefix: str = "") -> dict[str, float]:
    """AUC, log-loss, Brier score and expected calibration error (10 equal-width bins)."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    bins = np.minimum((p * 10).astype(int), 9)
    ece = 0.0
    for b in range(10):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(y[m].mean() - p[m].mean())
    out = {
        "auc": roc_auc_score(y, p) if len(np.unique(y)) > 1 else float("nan"),
        "logloss": log_loss(y, p, labels=[0, 1]),
        "brier": brier_score_loss(y, p),
        "ece": ece,
        "positive_rate": float(y.mean()),
        "rows": float(len(y)),
    }
    return {f"{prefix}{k}": float(v) for k, v in out.items()}


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[tuple[float, float]]:
    """(mean predicted probability, observed rate of the outcome) of each non-empty equal-width bin, binned as the
    expected calibration error bins them: the gate's report and the pipeline's plot data draw it."""
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0, 1)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return [(float(p[idx == b].mean()), float(y[idx == b].mean())) for b in range(bins) if (idx == b).any()]
