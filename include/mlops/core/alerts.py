"""Alert messages: what happened, where (DAG, task, date) and a link to the run, as Slack payloads.

Sending lives in the Airflow adapter (``plugins/mlops_airflow/blocks/notifiers.py``), which uses the slack provider's
hooks, or writes the same text to the log when no Slack connection exists.

Every value an alert carries may come from data or from a client (a dropped file's values in a quarantine
message, a run id, an exception's text), and Slack reads ``text`` and the mrkdwn blocks as markup: ``<!channel>``
pings a whole channel, ``<https://...|label>`` is a link disguised as a label, a backtick closes the code span or
block around it. So ``text()`` and ``blocks()`` escape every value they interpolate (title, detail, the fields'
names and values, DAG, task, date) with ``escape``: ``&``, ``<``, ``>`` as Slack's rules say (``&amp;``,
``&lt;``, ``&gt;``), and every backtick replaced by its look-alike U+02CB (``ˋ``), so no value opens or closes a
code span or block (a zero-width space would leave the backtick to a reader's copy and paste). Only the message's
own markup stays live: the icons, ``*bold*``, the code spans and the code block around the values, and the link
to the task's log (``link``, the run's own URL: shown as a link only when it is http(s), with ``|``, ``<``, ``>``
and whitespace percent-encoded so it cannot end the link early).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ICONS = {
    "failure": ":red_circle:",
    "retry": ":large_orange_circle:",
    "quarantine": ":no_entry:",
    "drift": ":chart_with_upwards_trend:",
    "gate": ":vertical_traffic_light:",
    "service": ":rotating_light:",  # the prediction service: latency, errors, unreachable (an alert, no retraining)
    "skew": ":left_right_arrow:",  # clients send other features than curation makes (an alert, no retraining)
    "audit": ":lock:",  # the audit trail broken, or the champion changed outside the platform
    "info": ":information_source:",
}
MAX_DETAIL = 2500  # Slack section text is limited to 3000 characters
BACKTICK_LOOKALIKE = "\u02cb"  # MODIFIER LETTER GRAVE ACCENT: reads as a backtick, is no markup


def escape(value: Any) -> str:
    """``value`` as text Slack shows literally: ``&``, ``<``, ``>`` escaped, backticks replaced by a look-alike."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", BACKTICK_LOOKALIKE)


_URL_UNSAFE = re.compile(r"[|<>\s\"`]")


def link_url(url: str) -> str | None:
    """The URL as Slack's ``<url|label>`` may hold it (``|``, ``<``, ``>``, quotes, backticks and whitespace
    percent-encoded, ``&`` escaped), or None for anything but an http(s) URL."""
    if not re.match(r"(?i)^https?://[^/?#\s]", url):
        return None
    encoded = _URL_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), url)
    return encoded.replace("&", "&amp;")


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
        """DAG, task and date, escaped (Slack markup: the names in code spans)."""
        return self._where(escape)

    def _where(self, esc: Callable[[Any], str]) -> str:
        parts = []
        if self.dag_id:
            parts.append(f"DAG `{esc(self.dag_id)}`")
        if self.task_id:
            parts.append(f"task `{esc(self.task_id)}`" + (f" (try {esc(self.try_number)})" if self.try_number else ""))
        if self.date:
            parts.append(f"date {esc(self.date)}")
        return ", ".join(parts)

    def text(self, markup: bool = True) -> str:
        """The text form: Slack's notification text, which Slack reads as markup too (every value escaped); with
        ``markup=False`` the log line, every value as it is (a log is no Slack message)."""
        esc = escape if markup else str
        lines = [f"[{esc(self.kind.upper())}] {esc(self.title)}"]
        if where := self._where(esc):
            lines.append(where)
        if self.detail:
            lines.append(_clip(esc(self.detail)))
        for k, v in self.fields.items():
            lines.append(f"{esc(k)}: {esc(v)}")
        if self.link:
            lines.append(f"log: {(link_url(self.link) or escape(self.link)) if markup else self.link}")
        return "\n".join(lines)

    def blocks(self) -> list[dict[str, Any]]:
        icon = ICONS.get(self.kind, ICONS["info"])
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{escape(self.title)}*\n{self.where}"}},
        ]
        if self.detail:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"```{_clip(escape(self.detail))}```"}}
            )
        if self.fields:
            blocks.append(
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": f"*{escape(k)}*\n{escape(v)}"}
                        for k, v in list(self.fields.items())[:10]
                    ],
                }
            )
        if self.link:
            url = link_url(self.link)
            log_line = f"<{url}|Task log>" if url else f"Task log: {escape(self.link)}"
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": log_line}]})
        return blocks


def _clip(s: str) -> str:
    """An escaped text cut to fit Slack's limit, never inside an entity (``&lt;``...)."""
    if len(s) <= MAX_DETAIL:
        return s
    cut = s[: MAX_DETAIL - 20]
    amp = cut.rfind("&")
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "\n... (truncated)"
