"""Task callables of ``monitor_model``: the daily report, the firing rule, the Slack drift alert."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def _cfg(context):
    from include.mlops.monitor.config import MonitorConfig

    from .forms import overrides

    return MonitorConfig(**overrides(MonitorConfig, context["params"]))


def data_dates(context: dict[str, Any]) -> list[str]:
    """The data dates this run reports on: those the triggering Asset events name (a day's flights curated or
    quarantined; several when days were ingested faster than monitoring ran), else the ``date`` param or the
    logical date of a manual run."""
    from include.mlops.core.lake import as_date

    from .defaults import batch_date

    events = context.get("triggering_asset_events") or {}
    dates = set()
    for asset, evs in events.items():
        if str(getattr(asset, "name", asset)).endswith("_flights"):
            dates |= {as_date(e.extra["date"]).isoformat() for e in evs if (e.extra or {}).get("date")}
    return sorted(dates) or [batch_date(context)]


def report(context: dict[str, Any]) -> dict[str, Any]:
    """The day's drift and performance report of the champion; skipped while there is no champion."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.mlops.core import layout, registry
    from include.mlops.monitor import monitor

    from .connections import get_lake

    champion = registry.alias_version("champion")
    if champion is None:
        raise AirflowSkipException("no champion yet: nothing to monitor")
    profile = registry.load_artifact(champion["version"], layout.TRAINING_PROFILE)
    if profile is None:
        raise AirflowSkipException(f"champion v{champion['version']} has no reference profile (profile.json)")
    lake, cfg = get_lake(), _cfg(context)
    for d in data_dates(context):
        r = monitor.report(lake, d, champion, profile, cfg)
        log.info(
            "monitoring %s, champion v%s: drifted %s; signals up: %s; report %s",
            r["date"],
            r["champion"],
            r["drifted"] or "none",
            [k for k, v in r["signals"].items() if v] or "none",
            r["report"],
        )
    return {k: r[k] for k in ("date", "champion", "drifted", "signals", "report")}


def check_thresholds(context: dict[str, Any]) -> bool:
    """Fire when a signal was up on enough consecutive days, outside the cool-down: Slack alert, and True (the
    trigger runs). The decision goes to XCom under ``decision`` (the trigger's conf takes the reason from it)."""
    from include.mlops.core import rollouts
    from include.mlops.monitor import monitor

    from .connections import get_lake
    from .notifiers import notify

    lake, cfg = get_lake(), _cfg(context)
    d = monitor.decide(lake, data_dates(context)[-1], cfg, rollout=rollouts.current(lake))
    if d["fire"]:
        detail = "\n".join(f"{name}: " + "; ".join(reasons) for name, reasons in list(d["evidence"].items())[:6])
        notify(
            context,
            "drift",
            f"Drift on model v{d['champion']}: retraining",
            d["reason"] + "\n" + detail,
            {"signals": ", ".join(d["signals"]), "report": d["report"]},
        )
        monitor.record_trigger(lake, d)
    elif d["signals"]:
        log.info("signals %s fired but are held back: %s", d["signals"], d["held"])
    else:
        log.info("no signal up %s consecutive days (up today: %s)", cfg.consecutive_days, d["up_today"] or "none")
    context["ti"].xcom_push(key="decision", value=d)
    return bool(d["fire"])
