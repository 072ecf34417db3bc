"""The way back: when the retraining that monitoring started on a decayed champion fails the gate, the earlier
champions are weighed on the same most recent labelled days.

What comes first when such a retraining fails: this way back, at once, in the same ``train_model`` run (its gate's
held-out days are the most recent labelled days); a later remedy (another retraining, a tuning study) comes only
from a later monitoring trigger, after the cool-down, so two remedies never race. A way back that finds a version
sends it through the same rollout as any challenger (``deploy_model``: the shadow, the ramp, the paired
comparison); it never promotes at once.

``applies``  the run was started by monitoring's trigger on a decay (the trigger recorded for the run's end date
             says decay); a run started by drift alone or by hand has no way back
``search``   each earlier champion (``rollouts.past_champions``, kept in the registry with its reference profile)
             scored on the failed run's held-out days and judged by the gate against the current champion; the
             best one that passes and whose AUC beats the champion's by the gate's own margin (``max_auc_drop``:
             the drop a challenger may have, here the gain an earlier version must show) is chosen. The result,
             chosen or not, goes to ``layout.way_back(run_key)``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..core import layout, registry, rollouts
from ..core.config import Settings
from ..core.lake import Lake
from ..core.metrics import metrics
from .config import GateConfig
from .gate import decide

log = logging.getLogger(__name__)


def applies(lake: Lake, end_date: str | None) -> bool:
    """Whether monitoring's trigger recorded for ``end_date`` (``monitor.record_trigger``: the signals that fired,
    by name) fired on decay (reading errors raise)."""
    if not end_date or not lake.exists(*layout.triggers()):
        return False
    return any(
        t.get("date") == str(end_date) and "decay" in (t.get("signals") or [])
        for t in lake.read_json(*layout.triggers())
    )


def search(
    lake: Lake, run_key: str, overrides: dict[str, Any] | None = None, settings: Settings | None = None
) -> dict[str, Any]:
    """The earlier champions against the current one on the run's held-out days; ``chosen``: the version to roll
    out, or None. Written to the lake and returned."""
    from .. import kinds

    folder = layout.training(run_key)
    holdout = lake.read_parquet(folder, layout.TRAINING_HOLDOUT)
    cfg = GateConfig(**(overrides or {}))
    champ = registry.alias_version("champion", settings)
    if champ is None:
        raise RuntimeError("no champion: there is nothing to go back from")
    current = kinds.load_version(champ["version"], settings)
    label = current.spec.label
    y = holdout[label].to_numpy()
    p_champ = current.predict(holdout)
    rows = []
    for version in rollouts.past_champions(lake):
        if version == str(champ["version"]):
            continue
        p = kinds.load_version(version, settings).predict(holdout)
        d = decide(holdout, y, p, p_champ, cfg)
        gain = d.candidate["auc"] - d.champion["auc"]
        rows.append(
            {
                "version": version,
                "auc": d.candidate["auc"],
                "logloss": d.candidate["logloss"],
                "auc_gain": gain,
                "gate_passed": d.passed,
                "gate_failed": [c.name for c in d.checks if not c.passed],
                "beats_by_margin": gain >= cfg.max_auc_drop,
            }
        )
    eligible = [r for r in rows if r["gate_passed"] and r["beats_by_margin"]]
    chosen = max(eligible, key=lambda r: r["auc"]) if eligible else None
    meta = lake.read_json(folder, layout.TRAINING_SPEC)
    result = {
        "run_key": run_key,
        "champion": str(champ["version"]),
        "champion_auc": float(metrics(y, p_champ)["auc"]),
        "holdout_days": meta["split"]["test"],
        "data_date": meta["window"][-1],
        "margin": cfg.max_auc_drop,
        "earlier": rows,
        "chosen": chosen["version"] if chosen else None,
    }
    lake.write_json(result, *layout.way_back(run_key))
    log.info(
        "way back: %s",
        f"v{result['chosen']} (AUC {chosen['auc']:.4f}, champion {result['champion_auc']:.4f})"
        if chosen
        else f"no earlier champion beats v{result['champion']} by {cfg.max_auc_drop} AUC ({len(rows)} weighed)",
    )
    return result
