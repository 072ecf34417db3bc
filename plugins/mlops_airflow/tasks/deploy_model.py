"""Task callables of ``deploy_model``: canary / A-B rollout, evidence, promotion or rollback.

Translation only: the run's context in, ``include.mlops.deploy`` out (``transitions`` keeps the registry's aliases
and the rollout's state consistent, ``canary.look`` weighs the evidence), Airflow exceptions and Slack messages for
the outcomes. Fail closed: every registry or lake lookup that errors fails the task (it is retried, Slack hears of
the last failure) and changes nothing; a canary is promoted only on evidence, and rolled back when the evidence
stays inconclusive or the waiting time (``wait_hours``) is over.
"""

from __future__ import annotations

from typing import Any

# plan's paths and the tasks that take them
_TASKS = {"canary": "start_canary", "promote": "promote_now", "rollback": "rollback_now"}


def _cfg(context):
    """deploy.yaml with the run's overrides, checked (``forms.run_config``): ``plan`` makes it first of all."""
    from include.mlops.deploy.config import DeployConfig

    from ..blocks.forms import run_config

    return run_config(DeployConfig, context["params"])


def _version(context) -> str:
    v = context["params"].get("version")
    if v in (None, ""):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("deploy_model needs a model version (conf {'version': ...})")
    return str(v)


def _alert(context, title: str, detail: str, fields: dict[str, Any]) -> None:
    from ..blocks.notifiers import notify

    notify(context, "gate", title, detail, fields)


def _refused(call, *args):
    """``call(*args)``, a transition refused (``transitions.Refused``) failing the task for good: a retry would
    find the same."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.mlops.deploy import transitions

    try:
        return call(*args)
    except transitions.Refused as exc:
        raise AirflowFailException(str(exc)) from None


def plan(context) -> str:
    """Which path this run takes (``transitions.plan``). The run's settings are checked first: one out of its
    range fails the run here, before any alias, rollout or message."""
    from include.mlops.deploy import transitions

    from ..blocks.forms import known_conf

    known_conf(context)
    _cfg(context)
    return _TASKS[transitions.plan(context["params"].get("action", "canary"), _version(context))]


def _run_is_active(context):
    """Airflow's answer to whether a deploy_model run is still queued or running (``rollouts.claim``)."""
    from include.mlops.core import rollouts

    ti, dag_id = context["ti"], context["dag"].dag_id

    def active(run_id: str) -> bool:
        return ti.get_dr_count(dag_id=dag_id, run_ids=[run_id], states=list(rollouts.ACTIVE_RUN_STATES)) > 0

    return active


def start_canary(context) -> dict[str, Any]:
    """Start the canary of the run's version, owned by this run; a retry resumes it, and a canary of the same
    version whose run is over is adopted (``transitions.start``). A canary in the way fails the task at once."""
    from include.mlops.core import layout
    from include.mlops.core.schema import model
    from include.mlops.deploy import ramp, signals, transitions

    from ..blocks.audit import record
    from ..blocks.connections import get_lake
    from ..blocks.defaults import batch_date

    version, cfg = _version(context), _cfg(context)
    scrape = signals.service_scrape()
    started = _refused(
        transitions.start,
        get_lake(),
        version,
        cfg.stages,
        lambda: batch_date(context),
        context["run_id"],
        _run_is_active(context),
        lambda: signals.baseline(scrape),
    )
    rollout = started.rollout
    if started.step in ("start", "resume"):  # a retry records what its first try may not have
        record(
            context,
            "canary_started",
            version,
            f"rollout at the {ramp.stage_name(rollout['stages'][0]['share'])} stage against champion "
            f"v{rollout['champion']}",
            {"champion": rollout["champion"], "from_date": rollout["from_date"], "stages": rollout["stages"]},
            {"rollout": get_lake().uri(*layout.rollout())},
        )
    if started.step == "adopt":
        _alert(
            context,
            f"Canary of v{version} adopted: watched by this run again",
            f"its run {rollout['adopted_from'] or '(unrecorded)'} is over; clock and evidence kept",
            {"started": rollout["started_at"], "evidence": f"flights from {rollout['from_date']}"},
        )
    elif started.step == "start":
        first = ramp.stage_name(cfg.stages[0]["share"])
        _alert(
            context,
            f"Canary started: v{version} at the {first} stage",
            f"ramp {ramp.ramp_text(cfg.stages)}",
            {
                "champion": f"v{started.champion}",
                "evidence": f"flights from {rollout['from_date']}",
                "needs": f"{cfg.min_labelled} labelled {model().rows} from {cfg.min_days} day(s) for a verdict",
            },
        )
    return rollout


def evidence_ready(context):
    """Poke: one look at the rollout (``canary.look``). A stage passed moves the rollout to the next one
    (``transitions.advance``, Slack told) and the wait goes on; a promotion or a roll-back (harm on the paired
    comparison, a limit crossed, the evidence cap or ``wait_hours`` reached) ends it: the decision travels to
    ``decide`` as this sensor's XCom."""
    from airflow.sdk import PokeReturnValue

    from include.mlops.deploy import canary, ramp, signals, transitions

    from ..blocks.connections import get_lake

    cfg, lake, version, run_id = _cfg(context), get_lake(), _version(context), context["run_id"]
    rollout = _refused(transitions.watched, lake, version, run_id)
    from ..blocks.audit import record_stages

    record_stages(context, rollout)  # a stage a failed look entered but did not record
    scrape = signals.service_scrape()
    if rollout.get("stages") and rollout.get("baseline") is None:
        base = signals.baseline(scrape)
        if base is not None:
            rollout = transitions.rebase(lake, version, run_id, base)
    step, sig, result = canary.look(lake, rollout, cfg, float(context["params"].get("wait_hours") or 72), scrape)
    if step.action in ("promote", "rollback"):
        return PokeReturnValue(is_done=True, xcom_value=result)
    if step.action == "advance":
        moved = _refused(transitions.advance, lake, version, run_id, step.why, sig, lambda: signals.baseline(scrape))
        stage = moved["stages"][moved["stage"]]
        from ..blocks.audit import record_stages

        record_stages(context, moved)
        _alert(
            context,
            f"Canary of v{version}: now at the {ramp.stage_name(stage['share'])} stage",
            step.why,
            {"ramp": ramp.ramp_text(moved["stages"]), "stage": f"{moved['stage'] + 1} of {len(moved['stages'])}"},
        )
    return False


def ask_approval(context, link: str) -> dict[str, Any] | None:
    """``approve_promotion``'s question, or None (the task skips): asked when deploy.yaml's ``approval`` is on and
    the evidence says promote (``approval.needed``). The rollout records that it waits and where, the trail
    that it was asked, and Slack is told where to answer; then the task waits for the answer."""
    import datetime as dt

    from include.mlops.deploy import approval, transitions

    from ..blocks.audit import record
    from ..blocks.connections import get_lake

    settings, result = _cfg(context).approval, context["ti"].xcom_pull(task_ids="wait_for_evidence")
    if not approval.needed(settings, result):
        return None
    lake, version, run_id = get_lake(), _version(context), context["run_id"]
    rollout = _refused(transitions.watched, lake, version, run_id)
    asked_at = dt.datetime.now(dt.UTC)
    until = approval.deadline(settings, asked_at).isoformat(timespec="seconds")
    who = ", ".join(settings["approvers"]) or "an op or admin"
    transitions.approval(
        lake,
        version,
        run_id,
        {"status": "waiting", "asked_at": asked_at.isoformat(), "deadline": until, "link": link, "approvers": who},
    )
    numbers = {k: result.get(k) for k in ("verdict", "rows", "stage", "logloss") if k in result}
    record(
        context,
        "approval_asked",
        version,
        f"the evidence says promote: {who} asked to approve by {until}",
        numbers | {"timeout_hours": settings["timeout_hours"], "approvers": settings["approvers"]},
        {"approval": link},
    )
    _alert(
        context,
        f"Approval waits: promote v{version} to champion?",
        f"the canary's evidence says promote; nothing changes until {who} answers. Answer: {link}",
        {"deadline": f"{until} (no answer: rolled back)", "verdict": result.get("why") or "promote"},
    )
    return approval.request(version, result, rollout, settings) | {
        "hours": settings["timeout_hours"],
        "approvers": settings["approvers"],
    }


def _approved(context, lake, version: str, result: dict[str, Any]) -> dict[str, Any]:
    """The evidence's decision with ``approve_promotion``'s answer applied (the answer recorded in the trail and
    the rollout, by the approver): unchanged when no approval was asked (the task skipped)."""
    from include.mlops.deploy import approval, transitions

    from ..blocks.audit import approver, record

    answer = context["ti"].xcom_pull(task_ids="approve_promotion")
    if not answer:
        return result
    who = approver(context, answer.get("by"))  # the respondent, or the run when the deadline answered
    out = approval.outcome(version, answer | {"by": who["user"] if who["kind"] == "person" else None})
    status = "timed_out" if who["kind"] != "person" else ("approved" if out["decision"] == "promote" else "rejected")
    state = {"status": status, "answered_at": answer.get("at"), "by": who.get("user"), "reason": answer.get("reason")}
    _refused(transitions.approval, lake, version, context["run_id"], state)
    record(
        context,
        "approval_answered",
        version,
        out["why"],
        {"answer": answer.get("chosen"), "timed_out": status == "timed_out", "reason": answer.get("reason") or None},
        who=who,
    )
    why = out["why"] if out["decision"] == "rollback" else f"{result.get('why')}; {out['why']}"
    return result | {"decision": out["decision"], "why": why, "approval": state}


def decide(context) -> dict[str, Any]:
    """Promote or roll back on the sensor's decision (``transitions.decide``), and, when a person was asked, on
    their answer (only an approval promotes); a retry does it again."""
    from include.mlops.deploy import canary, transitions

    from ..blocks.connections import get_lake

    lake, version = get_lake(), _version(context)
    result = _approved(context, lake, version, context["ti"].xcom_pull(task_ids="wait_for_evidence"))
    ended = _refused(transitions.decide, lake, version, context["run_id"], result)
    promote = ended.decision == "promote"
    verb = "promoted to champion" if promote else "rolled back"
    detail = canary.describe(result) if "logloss" in result else result.get("why", "")
    from ..blocks.audit import record

    numbers = {k: result.get(k) for k in ("verdict", "rows", "stage", "logloss", "slices", "approval") if k in result}
    record(
        context,
        "promoted" if promote else "rolled_back",
        ended.version,
        result.get("why") or verb,
        numbers | {"champion_after": ended.champion},
        {"evidence": ended.report},
    )
    _alert(
        context,
        f"Model v{ended.version} {verb}",
        detail,
        {"champion now": f"v{ended.champion}" if ended.champion else "none", "evidence": ended.report},
    )
    return {"decision": ended.decision, "version": ended.version, "rows": result.get("rows")}


def promote_now(context) -> dict[str, Any]:
    from include.mlops.deploy import transitions

    from ..blocks.connections import get_lake
    from ..blocks.defaults import batch_date

    version = _version(context)
    manual = context["params"].get("action") == "promote"
    ended = transitions.promote(get_lake(), version, lambda: batch_date(context), manual)
    from include.mlops.core import audit

    from ..blocks.audit import actor, record

    event = "alias_changed" if manual else "promoted"
    # a retry finds the champion already set (from == to): the earlier try's record of this run stands
    again = ended.before == version and any(
        r["event"] == event and (r.get("actor") or {}).get("run_id") == actor(context)["run_id"]
        for r in audit.history(get_lake(), version)
    )
    if not again:
        record(
            context,
            event,
            version,
            f"promoted by hand (champion was v{ended.before})"
            if manual
            else "the first model: nothing to compare with",
            {"alias": "champion", "from": ended.before, "to": version},
        )
    _alert(
        context,
        f"Model v{version} promoted to champion",
        "first model: nothing to compare with" if ended.before is None else f"by hand (was v{ended.before})",
        {},
    )
    return {"decision": "promote", "version": version}


def rollback_now(context) -> dict[str, Any]:
    from include.mlops.deploy import transitions

    from ..blocks.connections import get_lake

    version = _version(context)
    _refused(transitions.rollback, get_lake(), version)
    from ..blocks.audit import record

    record(
        context, "alias_changed", version, "rolled back by hand", {"alias": "challenger", "from": version, "to": None}
    )
    _alert(context, f"Model v{version} rolled back by hand", "", {})
    return {"decision": "rollback", "version": version}


def abandon_canary(context) -> dict[str, Any]:
    """After ``wait_for_evidence`` or ``decide`` failed for good: ``transitions.abandon``. Skipped when it finds
    nothing to abandon (no canary of this version runs, or another run adopted it), unless ``start_canary``
    failed: then it fails, since this task is the run's leaf and a skip here would end the run green with nothing
    deployed (a failed ``plan`` fails the run on its own)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.mlops.deploy import transitions

    from ..blocks.connections import get_lake

    version = _version(context)
    try:
        ended = transitions.abandon(get_lake(), version, context["run_id"])
    except transitions.NothingToAbandon as exc:
        ti, run_id = context["ti"], context["run_id"]
        states = ti.get_task_states(dag_id=context["dag"].dag_id, task_ids=["start_canary"], run_ids=[run_id])
        if (states.get(run_id) or {}).get("start_canary") == "failed":
            raise AirflowFailException(f"{exc}; start_canary failed (see its log): this run deployed nothing") from None
        raise AirflowSkipException(str(exc)) from None
    if ended.decision == "rollback":
        from ..blocks.audit import record

        record(context, "rolled_back", version, "the canary could not be decided (wait_for_evidence or decide failed)")
        _alert(
            context,
            f"Model v{version} rolled back: the canary could not be decided",
            "wait_for_evidence or decide failed (see their logs); the challenger no longer gets traffic",
            {},
        )
    return {"decision": ended.decision, "version": version}
