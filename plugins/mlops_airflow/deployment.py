"""Task callables of ``deploy_model``: canary / A-B rollout, evidence, promotion or rollback."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

DEPLOY_PARAMS = ("canary_share", "min_labelled_per_arm", "max_logloss_increase")


def _cfg(context):
    from include.mlops.deployment import DeployConfig

    p = context["params"]
    return DeployConfig.load(overrides={k: p.get(k) for k in DEPLOY_PARAMS})


def _version(context) -> str:
    v = context["params"].get("version")
    if v in (None, ""):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("deploy_model needs a model version (conf {'version': ...})")
    return str(v)


def _alert(context, title: str, detail: str, fields: dict[str, Any]) -> None:
    from .alerts import notify

    notify(context, "gate", title, detail, fields)


def plan(context) -> str:
    """Which path this run takes: a canary, or an immediate promotion / rollback."""
    from include.mlops import registry

    action = context["params"].get("action", "canary")
    version = _version(context)
    champion = registry.alias_version("champion")
    if action in ("promote", "rollback"):
        return f"{action}_now"
    if champion is None or champion["version"] == version:
        log.info("no champion to compare with: version %s is promoted directly", version)
        return "promote_now"
    return "start_canary"


def start_canary(context) -> dict[str, Any]:
    from include.mlops import deployment, registry

    from .lake import get_lake

    version, cfg = _version(context), _cfg(context)
    champion = registry.alias_version("champion")["version"]
    registry.set_alias("challenger", version)
    rollout = deployment.start(get_lake(), version, champion, cfg.canary_share)
    _alert(context, f"Canary started: v{version} on {cfg.canary_share:.0%} of flights", "",
           {"champion": f"v{champion}", "needs": f"{cfg.min_labelled_per_arm} labelled flights per arm"})
    return rollout


def evidence_ready(context) -> bool:
    from include.mlops import deployment

    from .lake import get_lake

    lake = get_lake()
    rollout = deployment.current(lake)
    ev = deployment.evidence(deployment.labelled_predictions(lake, rollout), _cfg(context))
    log.info("labelled canary predictions: %s (need %d per arm)", ev["labelled"], _cfg(context).min_labelled_per_arm)
    return ev["ready"]


def decide(context) -> dict[str, Any]:
    from include.mlops import deployment, registry

    from .lake import get_lake

    lake, cfg = get_lake(), _cfg(context)
    rollout = deployment.current(lake)
    df = deployment.labelled_predictions(lake, rollout)
    models = {}
    for arm, v in (("champion", rollout["champion"]), ("challenger", rollout["version"])):
        booster, spec = registry.load_version(v)
        models[arm] = (booster, deployment.spec_of(spec))
    result = deployment.compare(df, models["champion"], models["challenger"], cfg)
    if result["decision"] == "promote":
        registry.set_alias("champion", rollout["version"])
    registry.delete_alias("challenger")
    deployment.finish(lake, "promoted" if result["decision"] == "promote" else "rolled_back", result)
    lake.write_json(result, "reports", "deployments", f"v{rollout['version']}.json")
    verb = "promoted to champion" if result["decision"] == "promote" else "rolled back"
    _alert(context, f"Model v{rollout['version']} {verb}", deployment.describe(result),
           {"champion now": f"v{registry.alias_version('champion')['version']}",
            "evidence": lake.uri("reports", "deployments", f"v{rollout['version']}.json")})
    return {"decision": result["decision"], "version": rollout["version"], "flights": result["flights"]}


def promote_now(context) -> dict[str, Any]:
    from include.mlops import deployment, registry

    from .lake import get_lake

    version = _version(context)
    before = registry.alias_version("champion")
    registry.set_alias("champion", version)
    registry.delete_alias("challenger")
    lake = get_lake()
    if deployment.current(lake) is None or deployment.current(lake).get("status") == "canary":
        deployment.start(lake, version, before["version"] if before else None, 0.0)
        deployment.finish(lake, "promoted", {"manual": context["params"].get("action") == "promote"})
    _alert(context, f"Model v{version} promoted to champion",
           "first model: nothing to compare with" if before is None else
           f"by hand (was v{before['version']})", {})
    return {"decision": "promote", "version": version}


def rollback_now(context) -> dict[str, Any]:
    from include.mlops import deployment, registry

    from .lake import get_lake

    version = _version(context)
    challenger = registry.alias_version("challenger")
    if challenger and challenger["version"] == version:
        registry.delete_alias("challenger")
    champion = registry.alias_version("champion")
    if champion and champion["version"] == version:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"v{version} is the champion: promote another version instead of rolling back")
    lake = get_lake()
    if deployment.current(lake) and deployment.current(lake).get("status") == "canary":
        deployment.finish(lake, "rolled_back", {"manual": True})
    _alert(context, f"Model v{version} rolled back by hand", "", {})
    return {"decision": "rollback", "version": version}
