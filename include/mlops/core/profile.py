"""The reference profile of a model version: per feature the quantiles and bin shares (numeric) or category
shares (categorical) of its training rows, the score distribution and label rate on its validation days, and
its validation metrics. Built when the training set is built, completed at registration, stored as
``profile.json`` on the version's MLflow run (and in the run's training folder): monitoring compares live data
with it without rereading a training set (``monitor.drift``).

The sketches: a numeric feature keeps ``LEVELS`` quantiles, its PSI bin edges (the reference's deciles) and the
share in each bin, its mean and standard deviation; a categorical one its category shares; both their missing
share."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

UNSEEN = "__unseen__"  # categories the reference never saw, counted together
LEVELS = 501  # quantile levels kept per numeric feature (KS error <= 1 / (LEVELS - 1))
PSI_BINS = 10  # PSI bins at the reference's quantiles


def finite(x: Any) -> np.ndarray:
    """The values as float64 with the missing ones left out."""
    a = np.asarray(x, dtype="float64").ravel()
    return a[~np.isnan(a)]


def missing_share(x: Any) -> float:
    a = np.asarray(x, dtype="float64").ravel()
    return float(np.isnan(a).mean()) if a.size else 0.0


# ---------------------------------------------------------------------------------------------- raw samples
def psi_edges(ref: Any, bins: int = PSI_BINS) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped: a discrete feature gets fewer bins)."""
    r = finite(ref)
    return np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1])) if r.size else np.array([])


def bin_shares(x: Any, edges: np.ndarray) -> np.ndarray:
    a = finite(x)
    counts = np.bincount(np.searchsorted(edges, a, side="left"), minlength=len(edges) + 1)
    return counts / max(a.size, 1)


def category_shares(values: Any, categories: list[str] | None = None) -> dict[str, float]:
    """Share of each category (missing values left out); with ``categories`` given, others go to UNSEEN."""
    import pandas as pd

    s = pd.Series(values, dtype="object").dropna().astype(str)
    if categories is not None:
        s = s.where(s.isin(set(categories)), UNSEEN)
    vc = s.value_counts(normalize=True)
    return {str(k): float(v) for k, v in vc.items()}


def numeric_profile(x: Any, levels: int = LEVELS, bins: int = PSI_BINS) -> dict[str, Any]:
    a = finite(x)
    if not a.size:
        return {
            "kind": "numeric",
            "rows": 0,
            "missing": missing_share(x),
            "quantiles": [],
            "psi_edges": [],
            "psi_shares": [],
            "mean": None,
            "std": None,
        }
    edges = psi_edges(a, bins)
    return {
        "kind": "numeric",
        "rows": int(a.size),
        "missing": missing_share(x),
        "quantiles": np.quantile(a, np.linspace(0, 1, levels)).tolist(),
        "psi_edges": edges.tolist(),
        "psi_shares": bin_shares(a, edges).tolist(),
        "mean": float(a.mean()),
        "std": float(a.std()),
    }


def categorical_profile(values: Any) -> dict[str, Any]:
    import pandas as pd

    s = pd.Series(values, dtype="object")
    return {
        "kind": "categorical",
        "rows": int(s.notna().sum()),
        "missing": float(s.isna().mean()) if len(s) else 0.0,
        "shares": category_shares(s),
    }


def feature_profile(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in numeric:
        out[c] = numeric_profile(pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan))
    for c in categorical:
        out[c] = categorical_profile(df[c].astype("object").where(df[c].notna(), None))
    return out


def build(
    train_rows: pd.DataFrame, numeric: list[str], categorical: list[str], dates: list[str], label: str = "label"
) -> dict[str, Any]:
    labels = train_rows[label].astype(float) if label in train_rows else pd.Series(dtype=float)
    return {
        "rows": int(len(train_rows)),
        "dates": [dates[0], dates[-1]] if dates else [],
        "features": feature_profile(train_rows, numeric, categorical),
        "label_rate": float(labels.mean()) if len(labels) else None,
    }


def complete(
    profile: dict[str, Any], scores: np.ndarray, labels: np.ndarray, metrics: dict[str, float]
) -> dict[str, Any]:
    """Add what only the trained model knows: its score distribution and metrics on the validation days."""
    return profile | {
        "score": numeric_profile(np.asarray(scores, dtype="float64")),
        "validation": {k: float(v) for k, v in metrics.items()}
        | {"label_rate": float(np.mean(labels)) if len(labels) else None},
    }
