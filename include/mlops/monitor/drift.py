"""Drift statistics, vectorised NumPy: effect sizes, not p-values (on thousands of rows every p-value is tiny).

Numeric features
  ``ks``           two-sample Kolmogorov-Smirnov statistic D = sup |F_ref - F_cur| (0 identical, 1 disjoint)
  ``psi``          population stability index on the reference's quantile bins (deciles by default):
                   sum (c - r) ln(c / r), shares clipped at ``EPS`` as Evidently does
  ``wasserstein``  first Wasserstein distance divided by the reference's standard deviation (Evidently's
                   "normed" Wasserstein: 0.1 means the mass moved by a tenth of a standard deviation)
  ``kl``           Kullback-Leibler divergence KL(current || reference) = sum c ln(c / r), natural log, on the PSI
                   bins; smoothing: both share vectors clipped at ``EPS`` (an empty bin counts as 1e-4, as in
                   PSI) and renormalised to sum to 1, so an empty bin gives a finite value, never infinity
                   (equals ``scipy.stats.entropy(smoothed c, smoothed r)``)
Categorical features
  ``psi``, ``js`` (Jensen-Shannon distance, natural log, as ``scipy.spatial.distance.jensenshannon``) and ``kl``
  (as above, with the same smoothing) on category shares; categories the reference never saw are counted
  together as ``UNSEEN`` (a share of 0 in the reference: KL is finite only through the smoothing).
Missing values are left out of every statistic and tracked as their own signal (``missing_ref``,
``missing_cur``).

Monitoring computes them against a ``profile`` of the reference (``core.profile``: quantiles and shares, so it
never rereads a training set); each statistic there is a registered function (``@statistic``), judged against the
threshold of its name in ``include/config/monitoring.yaml``. The exact two-sample forms below (``ks_statistic``,
``psi``, ``wasserstein``, ``js_distance``, ``kl_divergence`` on shares) are the references the tests and the
benchmark check them against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.profile import PSI_BINS, UNSEEN, bin_shares, category_shares, finite, missing_share, psi_edges

EPS = 1e-4


def ks_statistic(ref: Any, cur: Any) -> float:
    """Exact two-sample KS D (equals ``scipy.stats.ks_2samp(ref, cur).statistic``)."""
    r, c = np.sort(finite(ref)), np.sort(finite(cur))
    if not r.size or not c.size:
        return float("nan")
    grid = np.concatenate([r, c])
    fr = np.searchsorted(r, grid, side="right") / r.size
    fc = np.searchsorted(c, grid, side="right") / c.size
    return float(np.max(np.abs(fr - fc)))


def psi_from_shares(ref_shares: Any, cur_shares: Any) -> float:
    r = np.clip(np.asarray(ref_shares, dtype="float64"), EPS, None)
    c = np.clip(np.asarray(cur_shares, dtype="float64"), EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def kl_divergence(ref_shares: Any, cur_shares: Any) -> float:
    """KL(current || reference) = sum c ln(c / r) on shares, both clipped at ``EPS`` as PSI's are and renormalised
    to sum to 1 (an empty bin is not infinite): ``scipy.stats.entropy`` of the smoothed shares."""
    r = np.clip(np.asarray(ref_shares, dtype="float64"), EPS, None)
    c = np.clip(np.asarray(cur_shares, dtype="float64"), EPS, None)
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum(c * np.log(c / r)))


def psi(ref: Any, cur: Any, bins: int = PSI_BINS) -> float:
    edges = psi_edges(ref, bins)
    return psi_from_shares(bin_shares(ref, edges), bin_shares(cur, edges))


def wasserstein(ref: Any, cur: Any, normed: bool = True) -> float:
    """W1 between the samples (equals ``scipy.stats.wasserstein_distance``), divided by std(ref) if ``normed``."""
    r, c = np.sort(finite(ref)), np.sort(finite(cur))
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
    """Every registered categorical statistic of ``cur_values`` against reference shares, and the unseen share."""
    cur = category_shares(cur_values, [k for k in ref_shares if k != UNSEEN])
    if not cur:  # no current value at all: every statistic undefined (as on the numeric side), not drift
        return {name: float("nan") for name in STATISTICS["categorical"]} | {"unseen_share": float("nan")}
    r, c = _aligned(ref_shares, cur)
    return {name: s.fn(r, c) for name, s in STATISTICS["categorical"].items()} | {
        "unseen_share": float(cur.get(UNSEEN, 0.0))
    }


# ---------------------------------------------------------------------------------- against a saved profile
def _profile_cdf(q: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The reference CDF from its quantiles: a step function, right-continuous, exact at each quantile."""
    levels = np.linspace(0, 1, q.size)
    idx = np.searchsorted(q, grid, side="right") - 1
    return np.where(idx >= 0, levels[np.clip(idx, 0, None)], 0.0)


def numeric_drift(profile: dict[str, Any], cur: Any) -> dict[str, float]:
    """Every registered numeric statistic of ``cur`` against a numeric profile, and the missing shares."""
    c = np.sort(finite(cur))
    q = np.asarray(profile["quantiles"], dtype="float64")
    out = {"missing_ref": float(profile["missing"]), "missing_cur": missing_share(cur), "rows": int(c.size)}
    empty = not c.size or not q.size
    return out | {
        name: (float("nan") if empty else float(s.fn(profile, c))) for name, s in STATISTICS["numeric"].items()
    }


# ------------------------------------------------------------------------------------ statistics, registered
@dataclass(frozen=True)
class Statistic:
    name: str
    kind: str  # "numeric": fn(profile, sorted current values); "categorical": fn(ref shares, cur shares)
    label: str  # how reports and alerts name it
    fn: Callable


STATISTICS: dict[str, dict[str, Statistic]] = {"numeric": {}, "categorical": {}}


def statistic(name: str, kind: str, label: str):
    """Register a drift statistic: computed for every feature of its kind in every report, judged against
    ``monitoring.yaml``'s threshold of that name (``numeric: {name: ...}`` / ``categorical: {name: ...}``; null
    reports it without judging). A new statistic is one function here and one YAML key."""

    def register(fn: Callable) -> Callable:
        STATISTICS[kind][name] = Statistic(name, kind, label, fn)
        return fn

    return register


@statistic("ks", "numeric", "KS D")
def _ks(profile: dict[str, Any], c: np.ndarray) -> float:
    q = np.asarray(profile["quantiles"], dtype="float64")
    grid = np.concatenate([q, c])
    return float(np.max(np.abs(_profile_cdf(q, grid) - np.searchsorted(c, grid, side="right") / c.size)))


@statistic("psi", "numeric", "PSI")
def _psi(profile: dict[str, Any], c: np.ndarray) -> float:
    return psi_from_shares(profile["psi_shares"], bin_shares(c, np.asarray(profile["psi_edges"], dtype="float64")))


@statistic("wasserstein", "numeric", "normed Wasserstein")
def _wasserstein(profile: dict[str, Any], c: np.ndarray) -> float:
    # W1 = integral over u of |Q_ref(u) - Q_cur(u)|, on the profile's interior quantile levels: the extreme
    # levels (sample minimum and maximum) are left out, or one outlier of a heavy tail would dominate
    q = np.asarray(profile["quantiles"], dtype="float64")
    u = np.linspace(0, 1, q.size)[1:-1]
    return _norm(float(np.mean(np.abs(q[1:-1] - np.quantile(c, u)))), float(profile["std"] or 0.0))


@statistic("kl", "numeric", "KL divergence")
def _kl_numeric(profile: dict[str, Any], c: np.ndarray) -> float:
    return kl_divergence(profile["psi_shares"], bin_shares(c, np.asarray(profile["psi_edges"], dtype="float64")))


@statistic("psi", "categorical", "PSI")
def _psi_categorical(r: np.ndarray, c: np.ndarray) -> float:
    return psi_from_shares(r, c)


@statistic("js", "categorical", "Jensen-Shannon")
def _js(r: np.ndarray, c: np.ndarray) -> float:
    return js_distance(r, c)


@statistic("kl", "categorical", "KL divergence")
def _kl_categorical(r: np.ndarray, c: np.ndarray) -> float:
    return kl_divergence(r, c)


def labels() -> dict[str, str]:
    """Each statistic's name as reports show it."""
    return {s.name: s.label for kind in STATISTICS.values() for s in kind.values()}
