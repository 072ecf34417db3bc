"""Alert messages: what happened, where (DAG, task, date) and a link to the run, as Slack payloads.

Sending lives in the Airflow adapter (``plugins/mlops_airflow/notifiers.py``), which uses the slack provider's
hooks, or writes the same text to the log when no Slack connection exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ICONS = {
    "failure": ":red_circle:",
    "retry": ":large_orange_circle:",
    "quarantine": ":no_entry:",
    "drift": ":chart_with_upwards_trend:",
    "gate": ":vertical_traffic_light:",
    "service": ":rotating_light:",  # the prediction service: latency, errors, unreachable (an alert, no retraining)
    "info": ":information_source:",
}
MAX_DETAIL = 2500  # Slack section text is limited to 3000 characters


@dataclass
class Alert:
    kind: str
    title: str
    dag_id: str | None = None
    task_id: str | None = None
    date: str | None = None
    detail: str = ""
    link: str | None = None
    try_number: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        parts = []
        if self.dag_id:
            parts.append(f"DAG `{self.dag_id}`")
        if self.task_id:
            parts.append(f"task `{self.task_id}`" + (f" (try {self.try_number})" if self.try_number else ""))
        if self.date:
            parts.append(f"date {self.date}")
        return ", ".join(parts)

    def text(self) -> str:
        """The plain-text form: Slack's notification text and the log line."""
        lines = [f"[{self.kind.upper()}] {self.title}"]
        if self.where:
            lines.append(self.where)
        if self.detail:
            lines.append(_clip(self.detail))
        for k, v in self.fields.items():
            lines.append(f"{k}: {v}")
        if self.link:
            lines.append(f"log: {self.link}")
        return "\n".join(lines)

    def blocks(self) -> list[dict[str, Any]]:
        icon = ICONS.get(self.kind, ICONS["info"])
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{self.title}*\n{self.where}"}},
        ]
        if self.detail:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{_clip(self.detail)}```"}})
        if self.fields:
            blocks.append(
                {
                    "type": "section",
                    "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(self.fields.items())[:10]],
                }
            )
        if self.link:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{self.link}|Task log>"}]})
        return blocks


def _clip(s: str) -> str:
    return s if len(s) <= MAX_DETAIL else s[: MAX_DETAIL - 20] + "\n... (truncated)"
