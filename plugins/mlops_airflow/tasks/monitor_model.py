"""Task callables of ``monitor_model``: the prediction service's health (a Slack alert, never a retraining), the
daily report (with its training/serving skew alert, never a retraining), the firing rule, the Slack drift alert."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

log = logging.getLogger(__name__)


def _cfg(context):
    """monitoring.yaml with the run's overrides, checked (``forms.run_config``): each task makes it before it
    reads or writes anything, ``service_health`` first of all."""
    from include.mlops.monitor.config import MonitorConfig

    from ..blocks.forms import run_config

    return run_config(MonitorConfig, context["params"])


def data_dates(context: dict[str, Any]) -> list[str]:
    """The data dates this run reports on: those the triggering Asset events of the model's scored data set name (a
    day's flights curated or quarantined; several when days were ingested faster than monitoring ran), else the
    ``date`` param or the logical date of a manual run."""
    from include.mlops.core.lake import as_date
    from include.mlops.core.schema import model

    from ..blocks.assets import curated, quarantined
    from ..blocks.defaults import batch_date

    scored = model().dataset
    mine = {curated(scored).name, quarantined(scored).name}
    events = context.get("triggering_asset_events") or {}
    dates = set()
    for asset, evs in events.items():
        if str(getattr(asset, "name", asset)) in mine:
            dates |= {as_date(e.extra["date"]).isoformat() for e in evs if (e.extra or {}).get("date")}
    return sorted(dates) or [batch_date(context)]


def _ms(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f} ms"


def _rate(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2%}"


def service_health(context: dict[str, Any]) -> dict[str, Any]:
    """The prediction service (``MLOPS_SERVE_URL``) since the previous run: latency p50/p99, 5xx and 4xx rates from
    its /metrics, judged against the ``service:`` thresholds of ``monitoring.yaml``. A crossed threshold or a
    service that does not answer sends a Slack alert of kind ``service``; nothing here retrains. The section goes
    to XCom for the report of the run's last data date."""
    from include.mlops.monitor import service

    from ..blocks.connections import get_lake
    from ..blocks.forms import known_conf
    from ..blocks.notifiers import notify

    known_conf(context)
    cfg, lake = _cfg(context), get_lake()
    s = service.check(lake, cfg.service)
    if s["status"] == "ok":
        log.info(
            "prediction service %s, %s .. %s: %s requests, p50 %s, p99 %s, 5xx %s, rejected %s%s",
            s["url"],
            s["from"] or "its start",
            s["to"],
            s["requests"],
            _ms(s["p50_ms"]),
            _ms(s["p99_ms"]),
            _rate(s["error_rate"]),
            _rate(s["rejected_rate"]),
            " (counters reset: the service restarted)" if s["reset"] else "",
        )
    else:
        log.info("prediction service: %s %s", s["status"], s.get("error") or "(MLOPS_SERVE_URL unset)")
    if s["alert"]:
        if s["signals"]["service_down"]:
            title = f"Prediction service unreachable at {s['url']}"
            fields = {"url": s["url"], "last answer": s.get("from") or "never"}
        else:
            title = "Prediction service: " + "; ".join(r.split(" (")[0] for r in s["reasons"])
            fields = {
                "requests": s["requests"],
                "p50": _ms(s["p50_ms"]),
                "p99": _ms(s["p99_ms"]),
                "5xx rate": _rate(s["error_rate"]),
                "rejected rate": _rate(s["rejected_rate"]),
                "log: spilled / lake failures / lost": " / ".join(
                    "n/a" if s.get(k) is None else str(s[k]) for k in ("log_spilled", "log_lake_failures", "log_lost")
                ),
                "period": f"{s['from'] or 'service start'} .. {s['to']}",
            }
        notify(
            context,
            "service",
            title,
            "\n".join(s["reasons"]) + "\nan alert only: a service signal does not retrain the model",
            fields,
        )
    return s


def report(context: dict[str, Any]) -> dict[str, Any]:
    """The day's drift and performance report of the champion; skipped while there is no champion. The report of
    the run's last data date carries the run's check of the prediction service (``service_health``'s XCom). A
    training/serving skew (signal ``serving_skew``) sends one Slack alert of kind ``skew`` and never retrains."""
    from airflow.sdk.exceptions import AirflowSkipException

    from include.mlops.core import layout, registry
    from include.mlops.monitor import monitor

    from ..blocks.connections import get_lake

    cfg = _cfg(context)
    champion = registry.alias_version("champion")
    if champion is None:
        raise AirflowSkipException("no champion yet: nothing to monitor")
    profile = registry.load_artifact(champion["version"], layout.TRAINING_PROFILE)
    if profile is None:
        raise AirflowSkipException(f"champion v{champion['version']} has no reference profile (profile.json)")
    lake = get_lake()
    service = context["ti"].xcom_pull(task_ids="service_health") or {
        "status": "not checked",
        "note": "service_health returned nothing in this run (it failed: see its log and its failure alert)",
    }
    dates, skewed = data_dates(context), []
    for d in dates:
        r = monitor.report(lake, d, champion, profile, cfg, service=service if d == dates[-1] else None)
        skewed += [r] if r["signals"].get("serving_skew") else []
        log.info(
            "monitoring %s, champion v%s: drifted %s; signals up: %s; report %s",
            r["date"],
            r["champion"],
            r["drifted"] or "none",
            [k for k, v in r["signals"].items() if v] or "none",
            r["report"],
        )
    if skewed:  # training/serving skew: one Slack alert (the latest date's), never a retraining
        from include.mlops.core.schema import model
        from include.mlops.monitor import skew

        from ..blocks.notifiers import notify

        notify(context, "skew", *skew.alert(skewed[-1], model().rows))
    return {k: r[k] for k in ("date", "champion", "drifted", "signals", "report")}


def check_thresholds(context: dict[str, Any]) -> bool:
    """Fire when a signal was up on enough consecutive days, outside the cool-down: Slack alert, and True (the
    trigger runs). The decision goes to XCom under ``decision`` (the trigger's conf takes the reason from it)."""
    from include.mlops.core import rollouts
    from include.mlops.monitor import monitor
    from include.mlops.train import params as params_file

    from ..blocks.connections import get_lake
    from ..blocks.notifiers import notify

    cfg, lake = _cfg(context), get_lake()
    d = monitor.decide(lake, data_dates(context)[-1], cfg, rollout=rollouts.current(lake))
    if d["fire"]:
        d["remedy"], why = monitor.remedy(lake, d["date"], cfg, tunable=params_file.TUNE in params_file.load())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        d["run_id"] = f"monitoring__{d['date']}__{stamp}"  # the started run's id: its outcome is found by it
        detail = "\n".join(f"{name}: " + "; ".join(reasons) for name, reasons in list(d["evidence"].items())[:6])
        tuning = d["remedy"] == "tune"
        notify(
            context,
            "drift",
            f"Drift on model v{d['champion']}: " + ("a tuning study, then retraining" if tuning else "retraining"),
            d["reason"] + ("\n" + why if tuning else "") + "\n" + detail,
            {"signals": ", ".join(d["signals"]), "report": d["report"]},
        )
        monitor.record_trigger(lake, d)
    elif d["signals"]:
        log.info("signals %s fired but are held back: %s", d["signals"], d["held"])
    else:
        log.info("no signal up %s consecutive days (up today: %s)", cfg.consecutive_days, d["up_today"] or "none")
    context["ti"].xcom_push(key="decision", value=d)
    return bool(d["fire"])


def remedy(context: dict[str, Any]) -> str:
    """The trigger task to run: ``trigger_tune_model`` when ``check_thresholds`` chose a tuning study
    (``monitor.remedy``), else ``trigger_train_model``."""
    d = context["ti"].xcom_pull(task_ids="check_thresholds", key="decision")
    return "trigger_tune_model" if d.get("remedy") == "tune" else "trigger_train_model"


def audit_check(context: dict[str, Any]) -> dict[str, Any]:
    """The audit trail, daily (``core.audit``): the chain verified against its head in the registry (a problem is
    a Slack alert and fails the task for good: a person must look, a retry finds the same); then the registry's
    champion against the one the trail's decisions made (changed outside the platform, in MLflow by hand: recorded
    as such, by this run, and a Slack alert)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.core import audit

    from ..blocks.audit import actor
    from ..blocks.connections import get_lake
    from ..blocks.notifiers import notify

    lake = get_lake()
    checked = audit.verify(lake)
    for w in checked["warnings"]:
        log.warning("audit trail: %s", w)
    if not checked["ok"]:
        notify(
            context,
            "audit",
            f"Audit trail broken: {len(checked['problems'])} problem(s)",
            "\n".join(checked["problems"]),
            {"trail": checked["trail"], "records": str(checked["records"])},
        )
        raise AirflowFailException(f"the audit trail {checked['trail']} is broken: {'; '.join(checked['problems'])}")
    found = audit.check_champion(lake, actor(context))
    if found is not None:
        ev = found["evidence"]
        notify(
            context,
            "audit",
            "Champion alias changed outside the platform",
            found["why"],
            {
                "trail said": f"v{ev['from']}" if ev["from"] else "none",
                "registry says": f"v{ev['to']}" if ev["to"] else "none",
            },
        )
    log.info("audit trail %s: %d record(s), chain verified", checked["trail"], checked["records"] + (found is not None))
    return {"records": checked["records"] + (found is not None), "outside": found is not None}
