"""What the Model state page shows, as plain data: the registered versions with their aliases, gate result and
data window, the champion and the challenger, the current rollout, the last gate decision and the last drift
report. Each part carries its own error, so that one unreachable store shows as such and the rest still shows."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

MAX_VERSIONS = 25


def _versions() -> list[dict[str, Any]]:
    """Registered versions, newest first, with their aliases, gate tag, test AUC and registration time."""
    import mlflow

    from include.mlops.core import registry

    out = list(reversed(registry.versions()))[:MAX_VERSIONS]
    client = mlflow.MlflowClient(tracking_uri=registry.tracking_uri())
    for v in out:
        try:
            mv = client.get_model_version(registry.model_name(), v["version"])
            v["aliases"] = sorted(set(v.get("aliases") or []) | set(mv.aliases or []))  # search omits them
            v["gate"] = (mv.tags or {}).get("gate")
            v["registered"] = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
            run = client.get_run(v["run_id"])
            v["test_auc"] = run.data.metrics.get("test_auc")
            v["reason"] = run.data.tags.get("reason")
            v["window"] = run.data.tags.get("data_window")
        except Exception as exc:  # noqa: BLE001 - a half-written version must not take the page down
            log.warning("model version %s: %s", v["version"], exc)
    return out


def _last_gate(lake) -> dict[str, Any] | None:
    """``reports/gate/latest.json``, else the decision of the newest version among ``reports/gate/*/``."""
    from include.mlops.core import layout

    if lake.exists(*layout.gate_latest()):
        return lake.read_json(*layout.gate_latest())
    newest = None
    for key in lake.ls(layout.gates()):
        if key.endswith(".json") or not lake.exists(layout.gate(key), layout.GATE_DECISION):
            continue
        d = lake.read_json(layout.gate(key), layout.GATE_DECISION)
        d.setdefault("run_key", key)
        if newest is None or int(d.get("version") or 0) > int(newest.get("version") or 0):
            newest = d
    return newest


def state() -> dict[str, Any]:
    """Everything the page shows, as plain data (each part with its own error, so one failure shows as such)."""
    from include.mlops.core import layout, registry, rollouts
    from mlops_airflow.blocks.connections import get_lake

    facts: dict[str, Any] = {"model": registry.model_name(), "errors": {}}
    try:
        facts["versions"] = _versions()
        facts["champion"] = registry.alias_version("champion")
        facts["challenger"] = registry.alias_version("challenger")
        for alias in ("champion", "challenger"):
            for v in facts["versions"]:
                if facts[alias] and facts[alias]["version"] == v["version"] and alias not in v["aliases"]:
                    v["aliases"] = sorted([*v["aliases"], alias])
    except Exception as exc:  # noqa: BLE001
        facts["errors"]["registry"] = f"{type(exc).__name__}: {exc}"
        facts.setdefault("versions", [])
    try:
        lake = get_lake()
        facts["lake"] = lake.url
        facts["gate"] = _last_gate(lake)
        facts["drift"] = (
            lake.read_json(*layout.monitoring_latest()) if lake.exists(*layout.monitoring_latest()) else None
        )
        facts["rollout"] = rollouts.current(lake)
        from include.mlops.train import tune

        facts["study"] = tune.latest(lake)
    except Exception as exc:  # noqa: BLE001
        facts["errors"]["lake"] = f"{type(exc).__name__}: {exc}"
    try:
        facts["audit"] = audit_facts(get_lake())
    except Exception as exc:  # noqa: BLE001
        facts["errors"]["audit trail"] = f"{type(exc).__name__}: {exc}"
    return facts


RECENT = 25  # the decisions the page lists (the JSON API gives them all)


def audit_facts(lake) -> dict[str, Any]:
    """The audit trail as checked now (``core.audit.verify``: sound or its problems) and its latest decisions."""
    from include.mlops.core import audit

    checked = audit.verify(lake)
    records = audit.history(lake) if checked["records"] else []
    return {
        "ok": checked["ok"],
        "records": checked["records"],
        "problems": checked["problems"],
        "warnings": checked["warnings"],
        "recent": records[-RECENT:][::-1],
    }
