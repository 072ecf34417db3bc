"""The audit trail from a task (``include.mlops.core.audit``): who decided is the DAG run, and the user who triggered
it (Airflow's ``triggering_user_name``: a person in the UI or over REST, the scheduler for a scheduled run, the
triggering DAG's run for a triggered one).

``record`` appends one decision after the transition that made it, before its Slack message: a task retried (Slack
down, a lost connection) records it once. Fail closed: a trail that cannot be written fails the task, which retries;
the transitions it follows are idempotent."""

from __future__ import annotations

from typing import Any


def actor(context: dict[str, Any]) -> dict[str, Any]:
    """The run that decided: its DAG, its run id, the user who triggered it (None when Airflow does not say)."""
    run = context["dag_run"]
    return {
        "kind": "dag_run",
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "user": getattr(run, "triggering_user_name", None),
    }


def approver(context: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    """Who answered an approval in this run: the person (Airflow's respondent: ``{"id", "name"}``), or, when
    nobody answered by the deadline, the run itself (its default answer)."""
    run = actor(context)
    if not user or not (user.get("name") or user.get("id")):
        return run
    name = str(user.get("name") or user.get("id"))
    return {
        "kind": "person",
        "user": name,
        "user_id": str(user.get("id") or name),
        "dag_id": run["dag_id"],
        "run_id": run["run_id"],
    }


def record(
    context: dict[str, Any],
    event: str,
    version: str | None,
    why: str,
    evidence: dict[str, Any] | None = None,
    links: dict[str, Any] | None = None,
    recorded: list[dict[str, Any]] | None = None,
    who: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append the decision to the trail, once per run: a record of the same event about the same version by the
    same run with the same evidence (an earlier try of this task) is returned instead of written again. A stage
    entered is one decision whichever run records it (its evidence holds the stage's ``entered_at``). ``who``:
    the actor when it is not the run (``approver``)."""
    from include.mlops.core import audit
    from include.mlops.core.jsonsafe import json_safe

    from .connections import get_lake

    lake, who = get_lake(), who or actor(context)
    same = json_safe(evidence or {})
    for earlier in reversed(audit.history(lake, version) if recorded is None else recorded):
        same_run = (earlier.get("actor") or {}).get("run_id") == who["run_id"]
        if earlier["event"] == event and earlier.get("evidence") == same and (same_run or "entered_at" in same):
            return earlier
    return audit.append(lake, event, version, who, why, evidence, links)


def record_stages(context: dict[str, Any], rollout: dict[str, Any]) -> None:
    """Each stage the rollout entered after its first (its ``history``), recorded once: the look that advanced it
    records it, and any later look records one a failed task left unrecorded (the advance is not done again)."""
    from include.mlops.core import audit, layout

    from .connections import get_lake

    history = rollout.get("history") or []
    if len(history) < 2:
        return
    recorded = [r for r in audit.history(get_lake(), str(rollout["version"])) if r["event"] == "stage_changed"]
    for before, h in zip(history, history[1:], strict=False):
        record(
            context,
            "stage_changed",
            str(rollout["version"]),
            before.get("why") or "the stage passed",
            {"stage": h["stage"], "share": h["share"], "entered_at": h["entered_at"], "signals": before.get("signals")},
            {"rollout": get_lake().uri(*layout.rollout())},
            recorded,
        )
