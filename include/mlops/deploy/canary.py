"""Canary / A-B rollout of a challenger version, and the decision to promote or roll back on evidence.

``start``     the rollout's state (``core.rollouts``) tells the prediction service the canary share of the
              challenger (the service routes by a stable hash of the flight key)
``evidence``  the canary's flights: those of the data dates after the one whose run started the rollout
              (``from_date``, never taken from what clients sent), first served after the rollout started, each
              flight by its first logged prediction (a later re-post of the same flight cannot replace it),
              joined by flight key with the outcomes that ingestion brought in later; ready when each arm has
              enough labelled flights
``compare``   both versions scored on the same labelled canary flights, with the features ingestion curated for
              them (not those a client sent):
              the paired log-loss difference with a 95 % confidence interval, and the AUC difference with a
              bootstrap interval; also each arm's live AUC on the flights it actually served. The verdict:
              ``promote`` when the interval's upper end is within the tolerance, ``rollback`` when its lower end
              is beyond it, else ``inconclusive`` (wait for more flights; at ``max_labelled_per_arm``, or after
              the run's ``wait_hours``, an inconclusive canary is rolled back: not shown to be safe)
``look``      one look at the evidence: the decision once the comparison is conclusive, or when each arm reached
              ``max_labelled_per_arm`` or the run's ``wait_hours`` are over (both: roll back); else keep waiting
``finish``    the rollout ends, promoted or rolled back

``start`` and ``finish`` write the rollout's state only; ``transitions`` changes it together with the registry's
aliases (champion := challenger on a promotion, the challenger alias removed either way).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from .. import kinds
from ..core import layout, predictions, rollouts
from ..core.frame import join_sources, load_window
from ..core.jsonsafe import json_safe
from ..core.lake import Lake, as_date
from ..core.metrics import metrics
from ..core.schema import dataset, model, row_key
from .config import DeployConfig

log = logging.getLogger(__name__)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def start(
    lake: Lake,
    version: str,
    champion: str | None,
    share: float,
    data_date: dt.date | str,
    owner: str | None = None,
) -> dict[str, Any]:
    """Start the rollout. ``data_date``: the data date of the run that starts it; the canary's evidence is the
    flights of the days after it. ``owner``: the deploy_model run that watches it (``rollouts.claim``)."""
    d = as_date(data_date)
    rollout = {
        "version": str(version),
        "champion": champion,
        "canary_share": float(share),
        "started_at": now(),
        "status": "canary",
        "data_date": d.isoformat(),
        "from_date": (d + dt.timedelta(days=1)).isoformat(),
        "owner": owner,
    }
    lake.write_json(rollout, *layout.rollout())
    return rollout


def finish(lake: Lake, decision: str, detail: dict[str, Any]) -> dict[str, Any]:
    """End the rollout (``promoted`` or ``rolled_back``, share 0, ``detail`` as its evidence) and keep its record
    in the history. The rollout's state only: ``transitions`` sets the aliases that go with it."""
    rollout = (rollouts.current(lake) or {}) | {
        "status": decision,
        "canary_share": 0.0,
        "finished_at": now(),
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
    return with_curated_features(lake, predictions.joined(lake, dates, versions, since=rollout["started_at"]))


def with_curated_features(lake: Lake, served: pd.DataFrame) -> pd.DataFrame:
    """The served flights with the features ingestion curated for them (flights joined with their weather) in
    place of those the client sent: what a client posts decides what it was answered, never the evidence the
    arms are compared on. The arm, version and served score stay as logged. A served flight that curation does
    not know (a key the upstream never delivered) is dropped."""
    if served.empty:
        return served
    dates = sorted({as_date(d) for d in served["date"]})
    flights, weather, _ = load_window(lake, dates[-1], (dates[-1] - dates[0]).days + 1)
    curated = join_sources(flights, weather)
    m = model()
    curated = curated.assign(**{m.key_field: row_key(curated, m).to_numpy()})
    keep = [c for c in served.columns if c not in curated.columns or c in (m.key_field, m.label.name, "date")]
    return served[keep].merge(
        curated.drop(columns=[c for c in (m.label.name, "date") if c in curated.columns]),
        on=m.key_field,
        how="inner",
        validate="one_to_one",
    )


def evidence(df: pd.DataFrame, cfg: DeployConfig) -> dict[str, Any]:
    counts = df["arm"].value_counts().to_dict() if len(df) else {}
    per_arm = {arm: int(counts.get(arm, 0)) for arm in ("champion", "challenger")}
    return {
        "labelled": per_arm,
        "ready": all(n >= cfg.min_labelled_per_arm for n in per_arm.values()),
        "enough": all(n >= cfg.max_labelled_per_arm for n in per_arm.values()),
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


def conclude(result: dict[str, Any], ev: dict[str, Any], timed_out: bool = False) -> dict[str, Any] | None:
    """The final decision on a comparison, or None to keep waiting: an inconclusive canary waits for more
    flights until each arm has ``max_labelled_per_arm`` (or the wait is over), then it is rolled back."""
    if result["decision"] != "inconclusive":
        return result
    if ev["enough"] or timed_out:
        why = "the waiting time is over" if timed_out else "each arm reached max_labelled_per_arm"
        return result | {
            "decision": "rollback",
            "why": f"inconclusive when {why}: the challenger was not shown to be no worse than the champion",
        }
    return None


def look(lake: Lake, rollout: dict[str, Any], cfg: DeployConfig, wait_hours: float) -> dict[str, Any] | None:
    """One look at the running canary's evidence: the final decision (JSON-safe), or None to keep waiting.

    Not enough labelled flights yet: wait, or roll back once ``wait_hours`` have passed since the rollout started.
    Enough: both versions (from the registry) are compared on them (``compare``) and ``conclude`` decides."""
    df = labelled_predictions(lake, rollout)
    ev = evidence(df, cfg)
    started = dt.datetime.fromisoformat(rollout["started_at"])
    waited_h = (dt.datetime.now(dt.UTC) - started).total_seconds() / 3600
    timed_out = waited_h >= wait_hours
    log.info(
        "labelled canary predictions: %s (need %d per arm; %.1f of %s hours waited)",
        ev["labelled"],
        cfg.min_labelled_per_arm,
        waited_h,
        wait_hours,
    )
    if not ev["ready"]:
        if timed_out:
            return {
                "decision": "rollback",
                "rows": int(len(df)),
                "labelled": ev["labelled"],
                "why": f"not enough labelled canary {model().rows} after {waited_h:.1f} hours",
            }
        return None
    result = compare(df, kinds.load_version(rollout["champion"]), kinds.load_version(rollout["version"]), cfg)
    final = conclude(result, ev, timed_out)
    if final is None:
        ll = result["logloss"]
        log.info(
            "inconclusive so far: log-loss difference %+.4f, 95 %% CI [%+.4f, %+.4f] against tolerance "
            "%+.4f; waiting for more %s",
            ll["diff"],
            *ll["ci95"],
            ll["tolerance"],
            model().rows,
        )
        return None
    return json_safe(final)


def _features(df: pd.DataFrame) -> pd.DataFrame:
    """The event-time features curation derives, from the scored data set's declared event time (none: as is)."""
    return dataset(model().dataset).event_features(df)


def compare(df: pd.DataFrame, champion, challenger, cfg: DeployConfig, seed: int = 0) -> dict[str, Any]:
    """``champion`` / ``challenger``: models (``kinds.Model``: each encodes the rows with its own spec). Paired
    comparison on the same labelled flights."""
    X = _features(df)
    label = model().label.name
    y = df[label].to_numpy(dtype=float)
    p = {name: m.predict(X) for name, m in (("champion", champion), ("challenger", challenger))}
    eps = 1e-7
    ll = {k: -(y * np.log(np.clip(v, eps, 1)) + (1 - y) * np.log(np.clip(1 - v, eps, 1))) for k, v in p.items()}
    diff = ll["challenger"] - ll["champion"]
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))
    ci = (mean - 1.96 * se, mean + 1.96 * se)
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
