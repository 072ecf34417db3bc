"""The daily monitoring report of the champion and the rule that turns it into a retraining trigger.

``report``  the trailing window's curated flights (with their weather) against the champion's reference
            profile (data drift per feature), the scores it served against its validation scores (prediction
            drift), the delay rate, and live performance from predictions joined with outcomes; written to
            ``reports/monitoring/date=D/report.json`` and ``report.html`` and summarised in
            ``reports/monitoring/latest.json``; with the prediction service's latency and error rates when the
            run checked it (``service.check``: once per run, shown in the report of the run's last data date;
            its signals alert and never retrain: they are not among ``SIGNALS``); and the training/serving skew
            of the request fields the prediction log kept against the curated rows of the same keys
            (``skew.compare``; signal ``serving_skew``, one of ``ALERTS``: a Slack alert from the report task,
            never a retraining)
``decide``  a signal of ``SIGNALS`` (data drift, prediction drift, decay) fires when it is up in each of the last
            ``consecutive_days`` reports; a fire is held back during a cool-down after the last trigger and
            while a canary is running (retraining then would race the rollout)
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd

from ..core import layout, predictions, schema
from ..core.frame import join_sources, load_window
from ..core.jsonsafe import json_safe
from ..core.lake import Lake, as_date
from ..core.schema import model
from . import drift, performance, skew
from .config import MonitorConfig

log = logging.getLogger(__name__)
SIGNALS = ("data_drift", "prediction_drift", "decay")  # the signals that retrain (``decide`` reads only these)
# the report's signals that alert and never retrain: retraining on curated data does not fix what a client sends
ALERTS = ("serving_skew",)


def _exceeds(stats: dict[str, float], thresholds: dict[str, float | None]) -> list[str]:
    return [
        f"{drift.labels().get(k, k)} {stats[k]:.3f} >= {t}"
        for k, t in thresholds.items()
        if t is not None and k in stats and stats[k] == stats[k] and stats[k] >= t
    ]


def raw_features(flights: pd.DataFrame, weather: pd.DataFrame) -> pd.DataFrame:
    """Flights with the joined weather and their key: the features as the service receives them."""
    df = join_sources(flights, weather)
    m = model()
    return df.assign(**{m.key_field: schema.row_key(df, m).to_numpy()})


def feature_drift(profile: dict[str, Any], current: pd.DataFrame, cfg: MonitorConfig) -> list[dict[str, Any]]:
    rows = []
    for name, ref in profile["features"].items():
        if name in cfg.ignore or name not in current:
            continue
        if ref["kind"] == "numeric":
            values = pd.to_numeric(current[name], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            stats = drift.numeric_drift(ref, values)
        else:
            values = current[name].astype("object").where(current[name].notna(), None)
            stats = drift.categorical_drift(ref["shares"], values) | {
                "missing_ref": ref["missing"],
                "missing_cur": float(values.isna().mean()) if len(values) else 0.0,
            }
        reasons = _exceeds(stats, cfg.thresholds(name, ref["kind"]))
        if stats["missing_cur"] - stats["missing_ref"] >= cfg.missing_increase:
            reasons.append(f"missing share {stats['missing_cur']:.1%} (reference {stats['missing_ref']:.1%})")
        rows.append({"feature": name, "kind": ref["kind"], **stats, "drifted": bool(reasons), "reasons": reasons})
    return rows


NOT_CHECKED = {
    "status": "not checked",
    "note": "the service is checked once per monitor_model run, in the report of the run's last data date",
}


def report(
    lake: Lake,
    date: dt.date | str,
    champion: dict[str, Any],
    profile: dict[str, Any],
    cfg: MonitorConfig | None = None,
    service: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compute, write and return the report of ``date``. ``champion``: {"version": ...}; ``profile``: its
    reference profile (``profile.json`` of its run); ``service``: the run's check of the prediction service
    (``service.check``), shown as it is, else "not checked"."""
    from .report import monitoring_report

    cfg = cfg or MonitorConfig.load()
    d = as_date(date)
    flights, weather, used = load_window(lake, d, cfg.window_days)
    current = raw_features(flights, weather)
    features = feature_drift(profile, current, cfg)
    drifted = [f["feature"] for f in features if f["drifted"]]

    dates = [d - dt.timedelta(days=i) for i in range(cfg.window_days)]
    served = predictions.predictions(lake, dates, versions={str(champion["version"])})
    pred = {"rows": int(len(served))}
    if len(served) and profile.get("score"):
        pred |= drift.numeric_drift(profile["score"], served["score"].to_numpy(dtype="float64"))
        pred["mean_score"] = float(served["score"].mean())
        pred["reasons"] = _exceeds(pred, cfg.prediction)
    pred["drifted"] = bool(pred.get("reasons"))

    labelled = current[current["is_labelled"].astype(bool)] if "is_labelled" in current else current.iloc[0:0]
    rate = float(labelled[model().label.name].astype(float).mean()) if len(labelled) else float("nan")
    ref_rate = profile.get("label_rate")
    label = {
        "reference": ref_rate,
        "current": rate,
        "change": rate - ref_rate if ref_rate is not None and rate == rate else float("nan"),
    }
    label["drifted"] = bool(
        cfg.label_rate_change is not None
        and label["change"] == label["change"]
        and abs(label["change"]) >= cfg.label_rate_change
    )

    live = predictions.join(served, predictions.labels_of(flights))  # the window's outcomes are loaded already
    window = performance.summary(live)
    ref_auc = (profile.get("validation") or {}).get("auc")
    drop = ref_auc - window["auc"] if ref_auc is not None and window["auc"] == window["auc"] else float("nan")
    perf = {
        "daily": performance.daily(live),
        "window": window,
        "reference_auc": ref_auc,
        "auc_drop": drop,
        "judged": window["rows"] >= cfg.min_labelled,
    }
    perf["decayed"] = bool(perf["judged"] and drop == drop and drop >= cfg.max_auc_drop)

    numeric, categorical = skew.model_features()
    skewed = skew.compare(served, current, key=model().key_field, numeric=numeric, categorical=categorical, **cfg.skew)

    out = {
        "date": d.isoformat(),
        "window": [used[0].isoformat(), used[-1].isoformat()],
        "days": len(used),
        "rows": int(len(current)),
        "champion": str(champion["version"]),
        "reference": {"rows": profile.get("rows"), "dates": profile.get("dates")},
        "features": features,
        "drifted": drifted,
        "prediction": pred,
        "label_rate": label,
        "performance": perf,
        "signals": {
            "data_drift": len(drifted) >= cfg.min_drifted_features or label["drifted"],
            "prediction_drift": pred["drifted"],
            "decay": perf["decayed"],
            "serving_skew": skew.is_up(skewed),  # an alert (ALERTS), never a retraining
        },
        "skew": skewed,
        "service": service or NOT_CHECKED,
        "config": cfg.as_dict(),
    }
    out = json_safe(out)
    folder = layout.monitoring(d)
    lake.write_bytes(monitoring_report(out, profile, current, served).encode(), folder, layout.MONITORING_HTML)
    out["report"] = lake.uri(folder, layout.MONITORING_HTML)
    lake.write_json(out, folder, layout.MONITORING_REPORT)
    latest = lake.read_json(*layout.monitoring_latest()) if lake.exists(*layout.monitoring_latest()) else None
    if latest is None or latest.get("date", "") <= out["date"]:
        lake.write_json(
            {k: out[k] for k in ("date", "window", "champion", "drifted", "signals", "report")}
            | {"fired": False, "service": {k: out["service"].get(k) for k in ("status", "signals", "reasons")}},
            *layout.monitoring_latest(),
        )
    return out


def reports(lake: Lake, dates: list[dt.date]) -> dict[str, dict[str, Any]]:
    out = {}
    for d in dates:
        folder = layout.monitoring(d)
        if lake.exists(folder, layout.MONITORING_REPORT):
            out[d.isoformat()] = lake.read_json(folder, layout.MONITORING_REPORT)
    return out


def triggers(lake: Lake) -> list[dict[str, Any]]:
    return lake.read_json(*layout.triggers()) if lake.exists(*layout.triggers()) else []


def decide(
    lake: Lake, date: dt.date | str, cfg: MonitorConfig | None = None, rollout: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Whether monitoring triggers retraining on ``date``, and why (or why not)."""
    cfg = cfg or MonitorConfig.load()
    d = as_date(date)
    days = [d - dt.timedelta(days=i) for i in range(cfg.consecutive_days)]
    recent = reports(lake, days)
    today = recent.get(d.isoformat())
    if today is None:
        raise FileNotFoundError(f"no monitoring report for {d} at {lake.uri(layout.monitoring_reports())}")
    fired = [s for s in SIGNALS if len(recent) == len(days) and all(r["signals"].get(s) for r in recent.values())]
    holds = []  # every reason that holds a fire back, the cool-down first
    previous = [t for t in triggers(lake) if t["date"] < d.isoformat()]
    if fired and previous:
        last = as_date(previous[-1]["date"])
        if (d - last).days < cfg.cooldown_days:
            holds.append(
                f"cool-down: last retraining trigger on {last}, {(d - last).days} of {cfg.cooldown_days} days ago"
            )
    if fired and rollout and rollout.get("status") == "canary":
        holds.append(f"a canary of v{rollout.get('version')} is running")
    held = "; ".join(holds) or None
    reason = ""
    if fired:
        parts = []
        if "data_drift" in fired:
            parts.append("data drift (" + ", ".join(today["drifted"]) + ")")
        if "prediction_drift" in fired:
            parts.append(f"prediction drift (score PSI {today['prediction'].get('psi', 0):.2f})")
        if "decay" in fired:
            p = today["performance"]
            parts.append(f"decay (live AUC {p['window']['auc']:.3f}, validation {p['reference_auc']:.3f})")
        reason = "; ".join(parts) + f" for {cfg.consecutive_days} consecutive days"
    worst = sorted((f for f in today["features"] if f["drifted"]), key=lambda f: -(f.get("ks") or 0))
    return {
        "date": d.isoformat(),
        "fire": bool(fired and not held),
        "signals": fired,
        "held": held,
        "reason": reason,
        "drifted": today["drifted"],
        "champion": today["champion"],
        "evidence": {f["feature"]: f["reasons"] for f in worst},
        "report": today.get("report"),
        "up_today": [s for s, v in today["signals"].items() if v],
    }


def retraining_outcome(lake: Lake, trigger: dict[str, Any]) -> str | None:
    """What became of the retraining a trigger started (its ``train_model`` run, by the run id the trigger
    recorded): ``passed`` (its gate), ``way back`` (the gate failed, the way back chose an earlier champion),
    ``failed`` (the gate failed and the way back found no better earlier version, or none applies: a trigger
    without decay), or None when it is not known (a tuning trigger, a trigger recorded without a run id, a run
    that has not decided yet or failed before its gate). Reading errors raise."""
    from ..core.lake import run_key

    if trigger.get("remedy", "retrain") != "retrain" or not trigger.get("run_id"):
        return None
    key = run_key(trigger["run_id"])
    if not lake.exists(layout.gate(key), layout.GATE_DECISION):
        return None
    if lake.read_json(layout.gate(key), layout.GATE_DECISION).get("passed"):
        return "passed"
    if "decay" not in (trigger.get("signals") or []):
        return "failed"  # the way back answers decay only (evaluate.wayback.applies)
    if not lake.exists(*layout.way_back(key)):
        return None  # the way back has not answered (running, or it failed)
    return "way back" if lake.read_json(*layout.way_back(key)).get("chosen") else "failed"


def remedy(lake: Lake, date: dt.date | str, cfg: MonitorConfig, tunable: bool = True) -> tuple[str, str]:
    """What a trigger on ``date`` starts: ``retrain`` (``train_model``), or ``tune`` (``tune_model``, then
    ``train_model`` with the study's best when it beats the defaults) when the retrainings of the last
    ``tuning.after_failed_retrains`` triggers before it all ended ``failed`` (``retraining_outcome``): retraining
    on the same parameters has not helped and no earlier version was better. A tuning trigger, a retraining that
    passed or whose outcome is not known ends the count. ``tunable``: params.yaml has a ``tune:`` section (without
    one there is no study to start). The reason goes to the alert and the trigger's record."""
    n = (cfg.tuning or {}).get("after_failed_retrains")
    if not n:
        return "retrain", "tuning after failed retrainings is off (monitoring.yaml tuning.after_failed_retrains)"
    if not tunable:
        return "retrain", "params.yaml has no tune: section: there is no study to start"
    failed: list[str] = []
    for t in reversed([t for t in triggers(lake) if t["date"] < as_date(date).isoformat()]):
        if retraining_outcome(lake, t) != "failed":
            break
        failed.append(t["date"])
        if len(failed) == n:
            return "tune", (
                f"the retrainings of the last {n} triggers ({', '.join(reversed(failed))}) failed the gate and no "
                "earlier version was better: a tuning study first, then training with its best parameters when "
                "they beat params.yaml's"
            )
    return "retrain", f"{len(failed)} of {n} retrainings in a row failed the gate with nothing better to go back to"


def record_trigger(lake: Lake, decision: dict[str, Any]) -> None:
    """Remember a trigger (for the cool-down, the way back and the choice of remedy: ``remedy``, ``run_id``); a
    rerun of the same date replaces its entry."""
    entries = [t for t in triggers(lake) if t["date"] != decision["date"]]
    keep = ("date", "signals", "reason", "champion", "report", "remedy", "run_id")
    entries.append({k: decision[k] for k in keep if k in decision})
    lake.write_json(sorted(entries, key=lambda t: t["date"]), *layout.triggers())
    if lake.exists(*layout.monitoring_latest()):
        latest = lake.read_json(*layout.monitoring_latest())
        if latest.get("date") == decision["date"]:
            lake.write_json(latest | {"fired": True, "reason": decision["reason"]}, *layout.monitoring_latest())
