"""A rollout of a challenger version through the ramp of stages (``ramp``), and the evidence it is decided on.

``start``     the rollout's state (``core.rollouts``) with its ramp (the stages of ``deploy.yaml``), at its first
              stage: the service routes that share of flights to the challenger by a stable hash of the flight
              key, and while the rollout runs it scores every other flight with the challenger too, in the shadow
``evidence``  the rollout's flights: those of the data dates after the one whose run started it (``from_date``,
              never taken from what clients sent), first served after it started (by either arm: the shadow's
              predictions are never served ones), each flight by its first logged prediction (a later re-post of
              the same flight cannot replace it), joined by flight key with the outcomes that ingestion brought in
              later; a verdict needs ``min_labelled`` of them, from ``min_days`` flight dates or more
``compare``   both versions scored on the same labelled flights, with the features ingestion curated for them
              (not those a client sent): the paired log-loss difference with a 95 % confidence interval (its
              standard error the larger of the flights' and the days' (``day_clustered_se``): a day's flights
              share its weather, one day is never the whole story), and the
              AUC difference with a bootstrap interval; also each arm's live AUC on the flights it actually
              served. The verdict: ``promote`` when the interval's upper end is within the tolerance,
              ``rollback`` when its lower end is beyond it, else ``inconclusive``; and the same difference per
              slice of the gate's slice columns (``slice_comparison``): a slice harmed rolls back too
``look``      one look: the comparison (when there is enough evidence) and the stage's operational signals
              (``signals``) weighed by ``ramp.step``: hold, advance to the next stage, promote, or roll back
``finish``    the rollout ends, promoted or rolled back

``start``, ``advance`` and ``finish`` write the rollout's state only; ``transitions`` changes it together with the
registry's aliases (champion := challenger on a promotion, the challenger alias removed either way).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from .. import kinds
from ..core import layout, predictions, rollouts
from ..core.jsonsafe import json_safe
from ..core.lake import Lake, as_date
from ..core.metrics import metrics
from ..core.schema import model
from ..evaluate.config import GateConfig
from . import curated, ramp, signals
from .config import DeployConfig

log = logging.getLogger(__name__)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def start(
    lake: Lake,
    version: str,
    champion: str | None,
    stages: list[dict[str, Any]],
    data_date: dt.date | str,
    owner: str | None = None,
    baseline: list | None = None,
) -> dict[str, Any]:
    """Start the rollout at the first of ``stages``. ``data_date``: the data date of the run that starts it; the
    evidence is the flights of the days after it. ``owner``: the deploy_model run that watches it
    (``rollouts.claim``). ``baseline``: the service's counters now (``signals.baseline``)."""
    d = as_date(data_date)
    at = now()
    rollout = {
        "version": str(version),
        "champion": champion,
        "started_at": at,
        "status": "canary",
        "data_date": d.isoformat(),
        "from_date": (d + dt.timedelta(days=1)).isoformat(),
        "owner": owner,
        "stages": [dict(s) for s in stages],
    }
    rollout = ramp.entered(rollout, 0, at, baseline)
    lake.write_json(rollout, *layout.rollout())
    return rollout


def advance(lake: Lake, rollout: dict[str, Any], why: str, sig: ramp.Signals, baseline: list | None) -> dict[str, Any]:
    """The rollout at its next stage (its share served from the service's next refresh), the stage it left
    recorded with ``why`` and its signals."""
    at = now()
    rollout = ramp.entered(ramp.left(rollout, at, "advance", why, sig), int(rollout["stage"]) + 1, at, baseline)
    lake.write_json(rollout, *layout.rollout())
    return rollout


def rebase(lake: Lake, rollout: dict[str, Any], baseline: list) -> dict[str, Any]:
    """The stage's counters at its start, taken late (the service did not answer when the stage began)."""
    rollout = rollout | {"baseline": baseline}
    lake.write_json(rollout, *layout.rollout())
    return rollout


def approval(lake: Lake, rollout: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """The rollout with the state of its approval (``deploy.approval``: asked, where, until when; then the
    answer), which the Model state page shows and ``finish`` keeps in the record."""
    rollout = rollout | {"approval": (rollout.get("approval") or {}) | state}
    lake.write_json(rollout, *layout.rollout())
    return rollout


def finish(lake: Lake, decision: str, detail: dict[str, Any]) -> dict[str, Any]:
    """End the rollout (``promoted`` or ``rolled_back``, share 0, ``detail`` as its evidence) and keep its record
    in the history. The rollout's state only: ``transitions`` sets the aliases that go with it."""
    at = now()
    current = rollouts.current(lake) or {}
    why = detail.get("why") or detail.get("decision") or decision
    rollout = ramp.left(current, at, "promote" if decision == "promoted" else "rollback", str(why), None) | {
        "status": decision,
        "canary_share": 0.0,
        "finished_at": at,
        "evidence": detail,
    }
    lake.write_json(rollout, *layout.rollout())
    lake.write_json(rollout, *layout.rollout_history(rollout.get("started_at", now()), rollout.get("version")))
    return rollout


def labelled_predictions(lake: Lake, rollout: dict[str, Any]) -> pd.DataFrame:
    """The canary's labelled flights: each flight of the data dates from the rollout's ``from_date`` on, by its
    first logged prediction, kept when that prediction came from either arm's version after the rollout started;
    joined with its outcome. Only those prediction partitions are read."""

    if not rollout.get("from_date"):
        raise ValueError(
            f"rollout of v{rollout.get('version')} has no from_date: it was not started by this "
            "version of deploy_model; roll it back and start it again"
        )
    first = as_date(rollout["from_date"])
    dates = [d for d in predictions.prediction_dates(lake) if d >= first]
    versions = {str(rollout["version"]), str(rollout.get("champion"))}
    return curated.with_curated_features(lake, predictions.joined(lake, dates, versions, since=rollout["started_at"]))


def evidence(df: pd.DataFrame, cfg: DeployConfig) -> dict[str, Any]:
    """The labelled flights so far (and by the arm that served them, and the flight dates they span): a verdict
    needs ``min_labelled`` flights from at least ``min_days`` dates; ``max_labelled`` is the most an inconclusive
    comparison waits for."""
    counts = df["arm"].value_counts().to_dict() if len(df) else {}
    n = int(len(df))
    days = int(df["date"].nunique()) if "date" in df.columns and n else 0
    return {
        "labelled": n,
        "days": days,
        "by_arm": {arm: int(counts.get(arm, 0)) for arm in ("champion", "challenger")},
        "ready": n >= cfg.min_labelled and days >= cfg.min_days,
        "enough": n >= cfg.max_labelled,
    }


def verdict(ci95: tuple[float, float] | list[float], tolerance: float) -> str:
    """``promote`` when the log-loss difference (challenger - champion) is, with 95 % confidence, at most
    ``tolerance``; ``rollback`` when it is, with 95 % confidence, more; else ``inconclusive``."""
    lo, hi = ci95
    if hi <= tolerance:
        return "promote"
    if lo > tolerance:
        return "rollback"
    return "inconclusive"


def look(
    lake: Lake,
    rollout: dict[str, Any],
    cfg: DeployConfig,
    wait_hours: float,
    scrape: signals.Scrape,
) -> tuple[ramp.Step, ramp.Signals, dict[str, Any]]:
    """One look at the running rollout: the paired comparison on the labelled flights so far (when there are
    ``min_labelled``; both versions from the registry), the current stage's signals, and ``ramp.step`` on both.
    Returns the step, the signals and the result (JSON-safe: the comparison's numbers when there was one, the
    evidence's counts, the stage, the step's why)."""
    if not rollout.get("stages"):
        raise ValueError(
            f"the rollout of v{rollout.get('version')} has no stages: it was started by an earlier version of "
            "deploy_model; roll it back (deploy_model, action 'rollback') and start it again"
        )
    df = labelled_predictions(lake, rollout)
    ev = evidence(df, cfg)
    quality, models = None, None
    if ev["ready"]:  # the verdict needs no AUC interval: its bootstrap is paid once, for the decision's record
        models = kinds.load_version(rollout["champion"]), kinds.load_version(rollout["version"])
        slices = tuple(GateConfig.load().slice_columns)  # the slices the gate judges, judged again on live flights
        quality = compare(df, *models, cfg.replace(bootstrap=0), slices=slices)
    sig = signals.read(lake, rollout, scrape)
    s = ramp.step(rollout, cfg.limits, sig, quality, ev, dt.datetime.now(dt.UTC), wait_hours)
    if quality is not None and s.action in ("promote", "rollback") and cfg.bootstrap:
        quality = compare(
            df, *models, cfg, slices=slices
        )  # the same verdict (the bootstrap never enters it), with the interval
    stage = rollout["stages"][int(rollout["stage"])]
    log.info(
        "%s: %s (labelled %s %d of %d; %s)",
        s.action.upper(),
        s.why,
        model().rows,
        ev["labelled"],
        cfg.min_labelled,
        f"log-loss difference 95 % CI [{quality['logloss']['ci95'][0]:+.4f}, {quality['logloss']['ci95'][1]:+.4f}]"
        if quality
        else "no comparison yet",
    )
    result = (quality or {}) | {
        "decision": s.action,
        "verdict": quality["decision"] if quality else None,
        "why": s.why,
        "rows": ev["labelled"],
        "labelled": ev["by_arm"],
        "stage": {"index": int(rollout["stage"]), "share": stage["share"], "of": len(rollout["stages"])},
        "signals": sig.as_dict(),
        "checks": s.checks,
    }
    return s, sig, json_safe(result)


def day_clustered_se(diff: np.ndarray, dates: np.ndarray) -> float | None:
    """The standard error of the mean of ``diff`` with the flights of a date as one cluster (CR1: the sum of each
    date's deviations, squared, summed, times G/(G-1)): the flights of one day share its weather and its delays,
    so they are not independent evidence. None with fewer than two dates."""
    codes, uniques = pd.factorize(pd.Series(dates).astype(str))
    g = len(uniques)
    if g < 2:
        return None
    dev = diff - diff.mean()
    sums = np.bincount(codes, weights=dev, minlength=g)
    return float(math.sqrt(g / (g - 1) * float((sums**2).sum())) / len(diff))


def _interval(diff: np.ndarray, dates: np.ndarray | None, z: float) -> tuple[float, float, float]:
    """The mean of ``diff`` and its interval of ``z`` standard errors (the larger of the flights' and the days')."""
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
    se_days = day_clustered_se(diff, dates) if dates is not None else None
    if se_days is not None:
        se = max(se, se_days)
    return mean, mean - z * se, mean + z * se


def slice_comparison(df: pd.DataFrame, diff: np.ndarray, columns: tuple[str, ...], cfg: DeployConfig) -> dict:
    """The paired log-loss difference per slice (each value of each of ``columns``, the gate's slice columns): a
    slice with ``min_slice_labelled`` flights or more is judged, harmed when its interval's lower end is beyond
    ``max_slice_logloss_increase``. The intervals (``ci``) are widened for the number of slices judged
    (Bonferroni: 95 % for them all together), so many small slices do not make a false harm likely; ``ci95`` is
    the slice's own 95 % interval (the ramp's "leans towards harm")."""
    dates = df["date"].to_numpy() if "date" in df.columns else None
    table, judged = [], []
    for col in columns:
        if col not in df.columns:
            continue
        for value, idx in df.groupby(col, observed=True).indices.items():
            row = {"column": col, "value": str(value), "rows": int(len(idx)), "diff": float(diff[idx].mean())}
            table.append(row)
            if len(idx) >= cfg.min_slice_labelled:
                judged.append((row, idx))
    z = NormalDist().inv_cdf(1 - 0.025 / max(len(judged), 1))
    harmed = []
    for row, idx in judged:
        mean, lo, hi = _interval(diff[idx], None if dates is None else dates[idx], z)
        row["ci"] = [lo, hi]
        row["ci95"] = [mean - (mean - lo) * 1.96 / z, mean + (hi - mean) * 1.96 / z]  # this slice alone
        if lo > cfg.max_slice_logloss_increase:
            harmed.append(f"{row['column']}={row['value']}")
    table.sort(key=lambda r: -r["diff"])
    return {
        "columns": list(columns),
        "judged": len(judged),
        "z": z,
        "tolerance": cfg.max_slice_logloss_increase,
        "harmed": harmed,
        "table": table,
    }


def compare(
    df: pd.DataFrame, champion, challenger, cfg: DeployConfig, seed: int = 0, slices: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``champion`` / ``challenger``: models (``kinds.Model``: each encodes the rows with its own spec). Paired
    comparison on the same labelled flights, over them all and per slice of ``slices`` (``slice_comparison``)."""
    X = curated.features(df)
    label = model().label.name
    y = df[label].to_numpy(dtype=float)
    p = {name: m.predict(X) for name, m in (("champion", champion), ("challenger", challenger))}
    eps = 1e-7
    ll = {k: -(y * np.log(np.clip(v, eps, 1)) + (1 - y) * np.log(np.clip(1 - v, eps, 1))) for k, v in p.items()}
    diff = ll["challenger"] - ll["champion"]
    mean, *ci = _interval(diff, df["date"].to_numpy() if "date" in df.columns else None, 1.96)
    rng = np.random.default_rng(seed)
    auc_diffs = []
    for _ in range(cfg.bootstrap):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            auc_diffs.append(metrics(y[i], p["challenger"][i])["auc"] - metrics(y[i], p["champion"][i])["auc"])
    m_ch, m_cl = metrics(y, p["champion"]), metrics(y, p["challenger"])
    live = {}
    for arm, g in df.groupby("arm"):
        yy = g[label].to_numpy(dtype=float)
        live[arm] = metrics(yy, g["score"].to_numpy())["auc"] if 0 < yy.sum() < len(yy) else float("nan")
    return {
        "decision": verdict(ci, cfg.max_logloss_increase),
        "rows": int(len(y)),
        "days": int(df["date"].nunique()) if "date" in df.columns else None,
        "logloss": {
            "champion": m_ch["logloss"],
            "challenger": m_cl["logloss"],
            "diff": mean,
            "ci95": list(ci),
            "tolerance": cfg.max_logloss_increase,
        },
        "auc": {
            "champion": m_ch["auc"],
            "challenger": m_cl["auc"],
            "diff": m_cl["auc"] - m_ch["auc"],
            "ci95": [float(np.percentile(auc_diffs, 2.5)), float(np.percentile(auc_diffs, 97.5))]
            if auc_diffs
            else None,
        },
        "live_auc_by_arm": live,
        "slices": slice_comparison(df, diff, tuple(slices), cfg),
        "config": cfg.as_dict(),
    }


def describe(result: dict[str, Any]) -> str:
    ll, auc = result["logloss"], result["auc"]
    ci = auc.get("ci95") or [float("nan"), float("nan")]
    why = f" ({result['why']})" if result.get("why") else ""
    rows = result.get("rows", result.get("flights"))  # "flights" in the evidence of rollouts before 2026-12
    return (
        f"{result['decision'].upper()}{why} on {rows} labelled canary {model().rows}: log-loss challenger "
        f"{ll['challenger']:.4f} vs champion {ll['champion']:.4f} (diff {ll['diff']:+.4f}, 95 % CI "
        f"[{ll['ci95'][0]:+.4f}, {ll['ci95'][1]:+.4f}], tolerance +{ll['tolerance']:.4f}); AUC "
        f"{auc['challenger']:.4f} vs {auc['champion']:.4f} (diff {auc['diff']:+.4f}, 95 % CI "
        f"[{ci[0]:+.4f}, {ci[1]:+.4f}])"
    )
