"""Task callables of ``deploy_model``: canary / A-B rollout, evidence, promotion or rollback.

Fail closed: every registry or lake lookup that errors fails the task (it is retried, Slack hears of the last
failure) and changes nothing; a canary is promoted only on evidence, and rolled back when the evidence stays
inconclusive or the waiting time (``wait_hours``) is over.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

log = logging.getLogger(__name__)


def _cfg(context):
    """deploy.yaml with the run's overrides, checked (``forms.run_config``): ``plan`` makes it first of all."""
    from include.mlops.deploy.config import DeployConfig

    from .forms import run_config

    return run_config(DeployConfig, context["params"])


def _version(context) -> str:
    v = context["params"].get("version")
    if v in (None, ""):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("deploy_model needs a model version (conf {'version': ...})")
    return str(v)


def _alert(context, title: str, detail: str, fields: dict[str, Any]) -> None:
    from .notifiers import notify

    notify(context, "gate", title, detail, fields)


def plan(context) -> str:
    """Which path this run takes: a canary, or an immediate promotion / rollback. A registry that cannot answer
    fails the task: "no champion" is decided only on the registry saying so. The run's settings are checked
    first: one out of its range fails the run here, before any alias, rollout or message."""
    from include.mlops.core import registry

    _cfg(context)
    action = context["params"].get("action", "canary")
    version = _version(context)
    champion = registry.alias_version("champion")
    if action in ("promote", "rollback"):
        return f"{action}_now"
    if champion is None or champion["version"] == version:
        log.info("no champion to compare with: version %s is promoted directly", version)
        return "promote_now"
    return "start_canary"


def _claim(lake, version: str, context) -> str:
    """``rollouts.claim`` for this run: whether a canary's owner run is still queued or running is Airflow's
    answer; a canary in the way fails the task at once (a retry would find it in the way all the same)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.core import rollouts

    ti, dag_id = context["ti"], context["dag"].dag_id

    def active(run_id: str) -> bool:
        return ti.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=list(rollouts.ACTIVE_RUN_STATES)) > 0

    try:
        return rollouts.claim(rollouts.current(lake), version, context["run_id"], active)
    except rollouts.CanaryInTheWay as exc:
        raise AirflowFailException(str(exc)) from None


def start_canary(context) -> dict[str, Any]:
    """Start the canary of the run's version, owned by this run; a retry resumes it, and a canary of the same
    version whose run is over is adopted (``rollouts.claim``)."""
    from include.mlops.core import registry, rollouts
    from include.mlops.deploy import canary

    from .connections import get_lake
    from .defaults import batch_date

    version, cfg = _version(context), _cfg(context)
    champion = registry.alias_version("champion")
    if champion is None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("the champion disappeared since plan: run deploy_model again")
    lake, run_id = get_lake(), context["run_id"]
    step = _claim(lake, version, context)  # a canary in the way fails the task here, before any alias is set
    registry.set_alias("challenger", version)
    if step != "start":  # this run's own canary (a retry), or one whose run is over: watched from here on
        rollout = rollouts.current(lake)
        if step == "adopt":
            rollout = rollouts.adopt(lake, rollout, run_id)
            _alert(
                context,
                f"Canary of v{version} adopted: watched by this run again",
                f"its run {rollout['adopted_from'] or '(unrecorded)'} is over; clock and evidence kept",
                {"started": rollout["started_at"], "evidence": f"flights from {rollout['from_date']}"},
            )
        log.info("%s the canary of v%s started %s", step, version, rollout["started_at"])
        return rollout
    rollout = canary.start(lake, version, champion["version"], cfg.canary_share, batch_date(context), owner=run_id)
    _alert(
        context,
        f"Canary started: v{version} on {cfg.canary_share:.0%} of flights",
        "",
        {
            "champion": f"v{champion['version']}",
            "evidence": f"flights from {rollout['from_date']}",
            "needs": f"{cfg.min_labelled_per_arm} labelled flights per arm",
        },
    )
    return rollout


def evidence_ready(context):
    """Poke: the canary's evidence so far. Done when the comparison is conclusive, when each arm reached
    ``max_labelled_per_arm`` or when ``wait_hours`` have passed since the rollout started (both: rollback);
    the decision travels to ``decide`` as this sensor's XCom."""
    from airflow.sdk import PokeReturnValue

    from include.mlops.core import registry
    from include.mlops.core.jsonsafe import json_safe
    from include.mlops.deploy import canary

    from .connections import get_lake

    cfg, lake = _cfg(context), get_lake()
    rollout = _running_rollout(lake, context)
    df = canary.labelled_predictions(lake, rollout)
    ev = canary.evidence(df, cfg)
    started = dt.datetime.fromisoformat(rollout["started_at"])
    waited_h = (dt.datetime.now(dt.UTC) - started).total_seconds() / 3600
    timed_out = waited_h >= float(context["params"].get("wait_hours") or 72)
    log.info(
        "labelled canary predictions: %s (need %d per arm; %.1f of %s hours waited)",
        ev["labelled"],
        cfg.min_labelled_per_arm,
        waited_h,
        context["params"].get("wait_hours"),
    )
    if not ev["ready"]:
        if timed_out:
            result = {
                "decision": "rollback",
                "flights": int(len(df)),
                "labelled": ev["labelled"],
                "why": f"not enough labelled canary flights after {waited_h:.1f} hours",
            }
            return PokeReturnValue(is_done=True, xcom_value=result)
        return False
    models = {}
    for arm, v in (("champion", rollout["champion"]), ("challenger", rollout["version"])):
        booster, spec = registry.load_version(v)
        models[arm] = (booster, canary.spec_of(spec))
    result = canary.compare(df, models["champion"], models["challenger"], cfg)
    final = canary.conclude(result, ev, timed_out)
    if final is None:
        ll = result["logloss"]
        log.info(
            "inconclusive so far: log-loss difference %+.4f, 95 %% CI [%+.4f, %+.4f] against tolerance "
            "%+.4f; waiting for more flights",
            ll["diff"],
            *ll["ci95"],
            ll["tolerance"],
        )
        return False
    return PokeReturnValue(is_done=True, xcom_value=json_safe(final))


def _running_rollout(lake, context) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.core import rollouts

    rollout = rollouts.current(lake)
    if not rollout or rollout.get("status") != "canary" or str(rollout.get("version")) != _version(context):
        raise AirflowFailException(f"no canary of v{_version(context)} is running (rollout: {rollout})")
    if not rollouts.owned_by(rollout, context["run_id"]):
        raise AirflowFailException(
            f"the canary of v{rollout['version']} is watched by deploy_model run {rollout['owner']} now, not this one"
        )
    return rollout


def decide(context) -> dict[str, Any]:
    """Promote or roll back on the sensor's decision. Each step can be retried: the aliases are set to where
    they belong, then the rollout ends."""
    from include.mlops.core import registry
    from include.mlops.deploy import canary

    from .connections import get_lake

    lake = get_lake()
    rollout = _running_rollout(lake, context)
    result = context["ti"].xcom_pull(task_ids="wait_for_evidence")
    if not result or result.get("decision") not in ("promote", "rollback"):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"no decision from wait_for_evidence: {result!r}")
    promote = result["decision"] == "promote"
    if promote:
        registry.set_alias("champion", rollout["version"])
    registry.delete_alias("challenger")
    lake.write_json(result, "reports", "deployments", f"v{rollout['version']}.json")
    canary.finish(lake, "promoted" if promote else "rolled_back", result)
    verb = "promoted to champion" if promote else "rolled back"
    detail = canary.describe(result) if "logloss" in result else result.get("why", "")
    champion = registry.alias_version("champion")
    _alert(
        context,
        f"Model v{rollout['version']} {verb}",
        detail,
        {
            "champion now": f"v{champion['version']}" if champion else "none",
            "evidence": lake.uri("reports", "deployments", f"v{rollout['version']}.json"),
        },
    )
    return {"decision": result["decision"], "version": rollout["version"], "flights": result.get("flights")}


def promote_now(context) -> dict[str, Any]:
    from include.mlops.core import registry, rollouts
    from include.mlops.deploy import canary

    from .connections import get_lake
    from .defaults import batch_date

    version = _version(context)
    before = registry.alias_version("champion")
    registry.set_alias("champion", version)
    registry.delete_alias("challenger")
    lake = get_lake()
    rollout = rollouts.current(lake)
    if rollout is None or rollout.get("status") == "canary":
        canary.start(lake, version, before["version"] if before else None, 0.0, batch_date(context))
        canary.finish(lake, "promoted", {"manual": context["params"].get("action") == "promote"})
    _alert(
        context,
        f"Model v{version} promoted to champion",
        "first model: nothing to compare with" if before is None else f"by hand (was v{before['version']})",
        {},
    )
    return {"decision": "promote", "version": version}


def rollback_now(context) -> dict[str, Any]:
    from include.mlops.core import registry, rollouts
    from include.mlops.deploy import canary

    from .connections import get_lake

    version = _version(context)
    champion = registry.alias_version("champion")
    if champion and champion["version"] == version:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"v{version} is the champion: promote another version instead of rolling back")
    challenger = registry.alias_version("challenger")
    if challenger and challenger["version"] == version:
        registry.delete_alias("challenger")
    lake = get_lake()
    rollout = rollouts.current(lake)
    if rollout and rollout.get("status") == "canary" and str(rollout.get("version")) == version:
        canary.finish(lake, "rolled_back", {"manual": True})
    _alert(context, f"Model v{version} rolled back by hand", "", {})
    return {"decision": "rollback", "version": version}


def abandon_canary(context) -> dict[str, Any]:
    """After ``wait_for_evidence`` or ``decide`` failed for good: take the challenger out of service (fail
    closed), unless ``decide`` had already made it the champion, in which case the rollout is closed as such.
    Skipped when no canary of this version runs or another run adopted it, unless ``start_canary`` failed: then
    it fails, since this task is the run's leaf and a skip here would end the run green with nothing deployed
    (a failed ``plan`` fails the run on its own)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.mlops.core import registry, rollouts
    from include.mlops.deploy import canary

    from .connections import get_lake

    version = _version(context)
    lake = get_lake()
    rollout = rollouts.current(lake)
    why = None
    if not (rollout and rollout.get("status") == "canary" and str(rollout.get("version")) == version):
        why = f"no canary of v{version} is running: nothing to take out of service"
    elif not rollouts.owned_by(rollout, context["run_id"]):  # another run adopted it and decides it
        why = f"the canary of v{version} is watched by deploy_model run {rollout['owner']}: it decides"
    if why:
        ti, run_id = context["ti"], context["run_id"]
        states = ti.get_task_states(dag_id=context["dag"].dag_id, task_ids=["start_canary"], run_ids=[run_id])
        if (states.get(run_id) or {}).get("start_canary") == "failed":
            raise AirflowFailException(f"{why}; start_canary failed (see its log): this run deployed nothing")
        raise AirflowSkipException(why)
    champion = registry.alias_version("champion")
    promoted = bool(champion and champion["version"] == version)
    challenger = registry.alias_version("challenger")
    if challenger and challenger["version"] == version:
        registry.delete_alias("challenger")
    canary.finish(
        lake,
        "promoted" if promoted else "rolled_back",
        {"why": "deploy_model failed before it could decide on evidence"},
    )
    if not promoted:
        _alert(
            context,
            f"Model v{version} rolled back: the canary could not be decided",
            "wait_for_evidence or decide failed (see their logs); the challenger no longer gets traffic",
            {},
        )
    return {"decision": "promote" if promoted else "rollback", "version": version}
