"""Drift statistics, vectorised NumPy: effect sizes, not p-values (on thousands of rows every p-value is tiny).

Numeric features
  ``ks``           two-sample Kolmogorov-Smirnov statistic D = sup |F_ref - F_cur| (0 identical, 1 disjoint)
  ``psi``          population stability index on the reference's quantile bins (deciles by default):
                   sum (c - r) ln(c / r), shares clipped at ``EPS`` as Evidently does
  ``wasserstein``  first Wasserstein distance divided by the reference's standard deviation (Evidently's
                   "normed" Wasserstein: 0.1 means the mass moved by a tenth of a standard deviation)
Categorical features
  ``psi`` and ``js`` (Jensen-Shannon distance, natural log, as ``scipy.spatial.distance.jensenshannon``) on
  category shares; categories the reference never saw are counted together as ``UNSEEN``.
Missing values are left out of every statistic and tracked as their own signal (``missing_ref``,
``missing_cur``).

Each statistic exists twice: on two raw samples (exact; used by tests and the benchmark) and against a
``profile`` (quantiles and shares of the reference, so monitoring never rereads a training set).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

EPS = 1e-4
UNSEEN = "__unseen__"
LEVELS = 501            # quantile levels kept per numeric feature in a profile (KS error <= 1 / (LEVELS - 1))
PSI_BINS = 10


def _clean(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype="float64").ravel()
    return a[~np.isnan(a)]


def missing_share(x: Any) -> float:
    a = np.asarray(x, dtype="float64").ravel()
    return float(np.isnan(a).mean()) if a.size else 0.0


# ---------------------------------------------------------------------------------------------- raw samples
def ks_statistic(ref: Any, cur: Any) -> float:
    """Exact two-sample KS D (equals ``scipy.stats.ks_2samp(ref, cur).statistic``)."""
    r, c = np.sort(_clean(ref)), np.sort(_clean(cur))
    if not r.size or not c.size:
        return float("nan")
    grid = np.concatenate([r, c])
    fr = np.searchsorted(r, grid, side="right") / r.size
    fc = np.searchsorted(c, grid, side="right") / c.size
    return float(np.max(np.abs(fr - fc)))


def psi_edges(ref: Any, bins: int = PSI_BINS) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped: a discrete feature gets fewer bins)."""
    r = _clean(ref)
    return np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1])) if r.size else np.array([])


def bin_shares(x: Any, edges: np.ndarray) -> np.ndarray:
    a = _clean(x)
    counts = np.bincount(np.searchsorted(edges, a, side="left"), minlength=len(edges) + 1)
    return counts / max(a.size, 1)


def psi_from_shares(ref_shares: Any, cur_shares: Any) -> float:
    r = np.clip(np.asarray(ref_shares, dtype="float64"), EPS, None)
    c = np.clip(np.asarray(cur_shares, dtype="float64"), EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(ref: Any, cur: Any, bins: int = PSI_BINS) -> float:
    edges = psi_edges(ref, bins)
    return psi_from_shares(bin_shares(ref, edges), bin_shares(cur, edges))


def wasserstein(ref: Any, cur: Any, normed: bool = True) -> float:
    """W1 between the samples (equals ``scipy.stats.wasserstein_distance``), divided by std(ref) if ``normed``."""
    r, c = np.sort(_clean(ref)), np.sort(_clean(cur))
    if not r.size or not c.size:
        return float("nan")
    allv = np.sort(np.concatenate([r, c]))
    deltas = np.diff(allv)
    fr = np.searchsorted(r, allv[:-1], side="right") / r.size
    fc = np.searchsorted(c, allv[:-1], side="right") / c.size
    w = float(np.sum(np.abs(fr - fc) * deltas))
    return _norm(w, float(np.std(r))) if normed else w


def _norm(w: float, std: float) -> float:
    return w / std if std > 0 else (0.0 if w == 0 else float("inf"))


def category_shares(values: Any, categories: list[str] | None = None) -> dict[str, float]:
    """Share of each category (missing values left out); with ``categories`` given, others go to UNSEEN."""
    import pandas as pd

    s = pd.Series(values, dtype="object").dropna().astype(str)
    if categories is not None:
        s = s.where(s.isin(set(categories)), UNSEEN)
    vc = s.value_counts(normalize=True)
    return {str(k): float(v) for k, v in vc.items()}


def _aligned(ref: dict[str, float], cur: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(set(ref) | set(cur) | {UNSEEN})
    return (np.array([ref.get(k, 0.0) for k in keys]), np.array([cur.get(k, 0.0) for k in keys]))


def js_distance(ref_shares: Any, cur_shares: Any) -> float:
    """Jensen-Shannon distance (natural log): ``scipy.spatial.distance.jensenshannon`` on the same vectors."""
    p = np.asarray(ref_shares, dtype="float64")
    q = np.asarray(cur_shares, dtype="float64")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / b[nz])))

    return math.sqrt(max((kl(p, m) + kl(q, m)) / 2, 0.0))


def categorical_drift(ref_shares: dict[str, float], cur_values: Any) -> dict[str, float]:
    cur = category_shares(cur_values, [k for k in ref_shares if k != UNSEEN])
    r, c = _aligned(ref_shares, cur)
    return {"psi": psi_from_shares(r, c), "js": js_distance(r, c) if c.sum() > 0 else float("nan"),
            "unseen_share": float(cur.get(UNSEEN, 0.0))}


# ---------------------------------------------------------------------------------- against a saved profile
def numeric_profile(x: Any, levels: int = LEVELS, bins: int = PSI_BINS) -> dict[str, Any]:
    a = _clean(x)
    if not a.size:
        return {"kind": "numeric", "rows": 0, "missing": missing_share(x), "quantiles": [], "psi_edges": [],
                "psi_shares": [], "mean": None, "std": None}
    edges = psi_edges(a, bins)
    return {"kind": "numeric", "rows": int(a.size), "missing": missing_share(x),
            "quantiles": np.quantile(a, np.linspace(0, 1, levels)).tolist(),
            "psi_edges": edges.tolist(), "psi_shares": bin_shares(a, edges).tolist(),
            "mean": float(a.mean()), "std": float(a.std())}


def categorical_profile(values: Any) -> dict[str, Any]:
    import pandas as pd

    s = pd.Series(values, dtype="object")
    return {"kind": "categorical", "rows": int(s.notna().sum()), "missing": float(s.isna().mean()) if len(s) else 0.0,
            "shares": category_shares(s)}


def _profile_cdf(q: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The reference CDF from its quantiles: a step function, right-continuous, exact at each quantile."""
    levels = np.linspace(0, 1, q.size)
    idx = np.searchsorted(q, grid, side="right") - 1
    return np.where(idx >= 0, levels[np.clip(idx, 0, None)], 0.0)


def numeric_drift(profile: dict[str, Any], cur: Any) -> dict[str, float]:
    """KS D, PSI and normed Wasserstein of ``cur`` against a numeric profile."""
    c = np.sort(_clean(cur))
    q = np.asarray(profile["quantiles"], dtype="float64")
    out = {"missing_ref": float(profile["missing"]), "missing_cur": missing_share(cur), "rows": int(c.size)}
    if not c.size or not q.size:
        return out | {"ks": float("nan"), "psi": float("nan"), "wasserstein": float("nan")}
    grid = np.concatenate([q, c])
    ks = np.max(np.abs(_profile_cdf(q, grid) - np.searchsorted(c, grid, side="right") / c.size))
    edges = np.asarray(profile["psi_edges"], dtype="float64")
    psi_v = psi_from_shares(profile["psi_shares"], bin_shares(c, edges))
    # W1 = integral over u of |Q_ref(u) - Q_cur(u)|, on the profile's interior quantile levels: the extreme
    # levels (sample minimum and maximum) are left out, or one outlier of a heavy tail would dominate
    u = np.linspace(0, 1, q.size)[1:-1]
    w = float(np.mean(np.abs(q[1:-1] - np.quantile(c, u))))
    return out | {"ks": float(ks), "psi": psi_v, "wasserstein": _norm(w, float(profile["std"] or 0.0))}
