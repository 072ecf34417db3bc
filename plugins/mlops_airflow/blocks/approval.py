"""A person's approval as an Airflow task: the standard provider's human-in-the-loop operator, asked only when the
DAG's ``ask`` says so (otherwise the task is skipped), with its question, evidence, deadline and respondents
decided when it runs (``deploy.yaml``'s values of the run), not when the DAG file is parsed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict


class ApprovalTask(HITLOperator):
    """Asks a person to choose one of ``options`` (``default``: the answer when the deadline passes unanswered),
    with a free-text reason. ``ask(context, link)`` runs first on a worker: None skips the task (no approval
    needed); otherwise a dict with the ``subject`` and ``body`` (Markdown) shown, ``hours`` to answer in and the
    ``approvers`` (user ids; empty: whoever the auth manager lets answer), after it has said where the question
    waits (``link``: the run's Required Actions page). The task then waits in Airflow's ``awaiting_input``
    state (no worker slot, no triggerer) until an answer, in the UI or over the REST API, or the deadline: the
    scheduler then answers ``default`` with no respondent. Its XCom is the answer: ``chosen``, ``by`` (the
    respondent's ``{"id", "name"}``, None on the deadline), ``timed_out``, ``reason``, ``at``."""

    ui_color = "#ffe4b5"

    def __init__(
        self,
        *,
        ask: Callable[[Any, str], dict[str, Any] | None],
        options: list[str],
        default: str,
        params: Any = None,
        **kwargs,
    ):
        # the DAG's params come in too (Airflow merges them into every task's): the form shown is this task's own
        form = ParamsDict(params or {})
        form.update({"reason": Param("", type="string", title="Reason (kept in the audit trail)", source="task")})
        super().__init__(
            subject="(decided when the task runs)", options=options, defaults=[default], params=form, **kwargs
        )
        self.ask = ask

    def execute(self, context):
        from airflow.sdk import conf
        from airflow.sdk.exceptions import AirflowSkipException

        base = conf.get("api", "base_url", fallback=None) or "http://localhost:8080/"
        link = self.generate_link_to_ui(task_instance=context["ti"], base_url=base)
        question = self.ask(context, link)
        if question is None:
            raise AirflowSkipException("no approval needed")
        self.subject, self.body = question["subject"], question["body"]
        self.response_timeout = timedelta(hours=float(question["hours"]))
        self.assigned_users = [{"id": u, "name": u} for u in question.get("approvers") or []] or None
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        answer = super().execute_complete(context, event)
        return {
            "chosen": list(answer["chosen_options"]),
            "by": answer.get("responded_by_user"),
            "timed_out": bool(event.get("timedout")),
            "reason": str((answer.get("params_input") or {}).get("reason") or ""),
            "at": answer["responded_at"].isoformat(),
        }
