"""Slack alerts through the slack provider's notifiers (``SlackWebhookNotifier``, ``SlackNotifier``), or the task
log through the project's own ``LogNotifier`` when no Slack connection is configured.

``slack_default`` (or ``MLOPS_SLACK_CONN_ID``) may be a ``slackwebhook`` connection (incoming webhook) or a
``slack`` connection (API token; channel from the connection's ``channel`` extra or ``MLOPS_SLACK_CHANNEL``).
The task callbacks (``on_task_failure``, ``on_task_retry``) are plain callables that build one ``Alert`` per event
and hand it to the notifier already rendered: a templated notifier as a callback fails under ``dag.test()``
(no DAG template environment there), a plain callable works under a scheduler and ``dag.test()`` alike.

Every alert goes through Airflow's secrets masker before it is sent or logged: an exception's text may quote a
connection's password, and Slack is outside Airflow's log masking. The masker sees the alert's values before
``Alert`` renders them (escaping ``&``, ``<``, ``>`` and backticks for Slack: a password holding one of those
would no longer match once escaped), and the rendered message once more. The log (``LogNotifier``, or a send
that failed) gets the message's plain text, its values as they are (``Alert.text(markup=False)``): a log is no
Slack message, and ``&lt;`` there would only hide what the value was. A send is bounded by
``MLOPS_SLACK_TIMEOUT_S`` (default 10 s) in all, without retries: a Slack that errs or hangs costs the task at
most that long and never changes its outcome.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier
from airflow.sdk.exceptions import AirflowFailException

from include.mlops.core.alerts import Alert

log = logging.getLogger("mlops.alerts")

NOT_CONFIGURED = "[slack: not configured, message logged instead]"
DEFAULT_TIMEOUT_S = 10.0


def slack_conn_id() -> str:
    return os.environ.get("MLOPS_SLACK_CONN_ID", "slack_default")


def slack_timeout_s() -> float:
    """The most one alert may take to send, in seconds (``MLOPS_SLACK_TIMEOUT_S``; 10 when unset or invalid)."""
    try:
        value = float(os.environ.get("MLOPS_SLACK_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIMEOUT_S


def masked(value: Any) -> Any:
    """``value`` (text, or Slack blocks) with every secret Airflow's masker knows replaced by ``***``: the
    passwords and extras of the connections this process has read, sensitive variables, ..."""
    from airflow.sdk._shared.secrets_masker import redact

    return redact(value)


class LogNotifier(BaseNotifier):
    """The project's own notifier for when no Slack connection is configured: the same message, to the task
    log, marked as such."""

    template_fields = ("text",)

    def __init__(self, *, text: str, **kwargs):
        super().__init__(**kwargs)
        self.text = text

    def notify(self, context) -> None:
        log.warning("%s\n%s", NOT_CONFIGURED, self.text)


def notifier_for(
    conn, conn_id: str, text: str, blocks: list[dict[str, Any]], timeout_s: float, log_text: str | None = None
) -> BaseNotifier:
    """The provider's notifier for the connection (``SlackWebhookNotifier`` for a webhook, ``SlackNotifier`` for
    an API token), without retries and bounded by ``timeout_s``; ``LogNotifier`` (with ``log_text``, the plain
    text, when given) when there is no connection."""
    if conn is None or not (conn.password or "").strip():  # absent, or declared without webhook URL / token
        return LogNotifier(text=text if log_text is None else log_text)
    timeout = max(1, math.ceil(timeout_s))
    if conn.conn_type == "slackwebhook":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        return SlackWebhookNotifier(
            slack_webhook_conn_id=conn_id, text=text, blocks=blocks, timeout=timeout, retry_handlers=[]
        )
    from airflow.providers.slack.notifications.slack import SlackNotifier

    channel = (conn.extra_dejson or {}).get("channel") or os.environ.get("MLOPS_SLACK_CHANNEL", "#mlops")
    return SlackNotifier(
        slack_conn_id=conn_id, text=text, channel=channel, blocks=blocks, timeout=timeout, retry_handlers=[]
    )


def send(alert: Alert) -> str:
    """Send one alert through the provider's notifier; returns where it went ("webhook", "api", "log" or
    "error"). Already rendered: the notifier is called with ``notify`` (no template rendering, which under
    ``dag.test()`` would need a DAG's template environment)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    conn_id = slack_conn_id()
    alert = Alert(**masked(dataclasses.asdict(alert)))  # the raw values: escaping comes after, in the rendering
    text, plain = masked(alert.text()), masked(alert.text(markup=False))
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        conn = None
    timeout_s = slack_timeout_s()
    outcome: dict[str, Any] = {}
    try:
        n = notifier_for(conn, conn_id, text, masked(alert.blocks()), timeout_s, log_text=plain)
        if isinstance(n, LogNotifier):
            n.notify({})
            return "log"
        via = "webhook" if conn.conn_type == "slackwebhook" else "api"
        n.hook.client  # noqa: B018 - the hook reads the connection here, in the task's own thread

        def deliver() -> None:
            try:
                n.notify({})
                outcome["via"] = via
            except Exception as exc:  # reported by the caller; a thread must not die with it
                outcome["error"] = exc

        sender = threading.Thread(target=deliver, name=f"slack-alert-{alert.kind}", daemon=True)
        sender.start()
        sender.join(timeout_s)
        if sender.is_alive():
            raise TimeoutError(f"no answer within {timeout_s:g} s")
        if "error" in outcome:
            raise outcome["error"]
    except Exception as exc:  # an alert must never take the task down with it
        # the exception's own text may hold the webhook URL: only its type is logged
        log.error(
            "Slack alert through %r failed (%s%s); the message was:\n%s",
            conn_id,
            type(exc).__name__,
            f" after {timeout_s:g} s" if isinstance(exc, TimeoutError) else "",
            plain,
        )
        return "error"
    log.info("Slack alert sent through %r (%s): %s", conn_id, via, masked(alert.title))
    return via


def where(context: dict[str, Any]) -> dict[str, Any]:
    """DAG, task, date, try and log link of the running task, for an Alert."""
    ti = context.get("ti") or context.get("task_instance")
    params = context.get("params") or {}
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "date": params.get("date") or context.get("ds"),
        "link": getattr(ti, "log_url", None),
        "try_number": getattr(ti, "try_number", None),
    }


class BatchQuarantined(AirflowFailException):
    """Validation rejected the batch; it is in quarantine. Fails the task without retries; its alert names the
    quarantine (raised by ``ingest_flights``' check, named here where the alert is made)."""

    def __init__(self, message: str, batch_id: str, quarantine_uri: str | None, failed_rules: list[str]):
        super().__init__(message)
        self.batch_id = batch_id
        self.quarantine_uri = quarantine_uri
        self.failed_rules = failed_rules


def on_task_failure(context: dict[str, Any]) -> None:
    """Task-level failure callback: one message per failed task, a quarantine named as such."""
    exc = context.get("exception")
    at = where(context)
    if isinstance(exc, BatchQuarantined):
        alert = Alert(
            kind="quarantine",
            title=f"Batch {exc.batch_id} quarantined",
            detail=str(exc),
            fields={"quarantine": exc.quarantine_uri},
            **at,
        )
    else:
        alert = Alert(
            kind="failure",
            title=f"Task {at['task_id']} failed",
            detail=f"{type(exc).__name__}: {exc}" if exc else "no exception recorded",
            **at,
        )
    send(alert)


def on_task_retry(context: dict[str, Any]) -> None:
    exc = context.get("exception")
    at = where(context)
    ti = context.get("ti")
    retries = getattr(getattr(ti, "task", None), "retries", None)
    send(
        Alert(
            kind="retry",
            title=f"Task {at['task_id']} will be retried",
            detail=f"{type(exc).__name__}: {exc}" if exc else "",
            fields={"retries allowed": retries},
            **at,
        )
    )


def notify(
    context: dict[str, Any], kind: str, title: str, detail: str = "", fields: dict[str, Any] | None = None
) -> str:
    """One message about a decision taken by the running task (gate, deployment, drift)."""
    return send(Alert(kind=kind, title=title, detail=detail, fields=fields or {}, **where(context)))


async def ingestion_late(context: dict[str, Any], **kwargs: Any) -> None:
    """The deadline alert of ``ingest_flights`` (run by the triggerer when a run is not done by its deadline):
    one Slack message naming the run and its data date."""
    import asyncio

    run = context.get("dag_run") or {}
    conf = run.get("conf") or {}
    date = conf.get("date") or str(run.get("logical_date") or "")[:10] or None
    deadline = (context.get("deadline") or {}).get("deadline_time")
    alert = Alert(
        kind="failure",
        title=f"Ingestion of {date or 'a day'} is late",
        dag_id=run.get("dag_id"),
        date=date,
        detail=f"run {run.get('dag_run_id')} was not finished by its deadline {deadline}: the day's data "
        "is not curated yet (a drop missing or late upstream, or a task stuck)",
        fields={"state": run.get("state")},
    )
    await asyncio.to_thread(send, alert)
