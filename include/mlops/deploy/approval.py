"""A person's approval before a promotion (``approval`` in ``include/config/deploy.yaml``, off by default).

When the canary's evidence says promote and the setting is on, ``deploy_model`` asks in Airflow's own
human-in-the-loop task (its Required Actions page) before ``decide`` runs: ``request`` is what the person sees
(the verdict and its numbers, the ramp the challenger went through, what each answer does), ``outcome`` turns the
answer into the decision. Fail closed: only an explicit approval promotes; a rejection rolls the challenger back,
and so does no answer by the deadline (Airflow resolves it with the default answer, ``REJECT``, and no
respondent). A roll-back the evidence decided is never asked about: it needs nobody's consent.

Cheap to import (the DAG file takes its options from here).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

APPROVE, REJECT = "Promote", "Roll back"
OPTIONS = [APPROVE, REJECT]
DEFAULT = REJECT  # what no answer by the deadline means


def needed(settings: dict[str, Any], result: dict[str, Any] | None) -> bool:
    """Whether a person must approve: the setting is on and the evidence's decision is a promotion."""
    return bool(settings.get("required")) and bool(result) and result.get("decision") == "promote"


def deadline(settings: dict[str, Any], asked_at: dt.datetime) -> dt.datetime:
    return asked_at + dt.timedelta(hours=float(settings["timeout_hours"]))


def _row(name: str, value: Any) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return f"| {name} | {text} |"


def request(version: str, result: dict[str, Any], rollout: dict[str, Any], settings: dict[str, Any]) -> dict:
    """The question (``subject``) and the evidence shown with it (``body``, Markdown) for promoting ``version``
    on ``result`` (``canary.look``'s decision) after ``rollout``."""
    from ..core.schema import model
    from . import canary, ramp

    ll = result.get("logloss") or {}
    slices = result.get("slices") or {}
    rows = [
        "| | |",
        "|---|---|",
        _row("verdict", f"{result.get('verdict', result.get('decision'))} ({result.get('why') or 'the evidence'})"),
        _row("labelled " + model().rows, result.get("rows")),
        _row("champion", f"v{rollout.get('champion')}"),
        _row("ramp", ramp.ramp_text(rollout.get("stages") or [])),
    ]
    if ll:
        rows.append(
            _row(
                "log-loss challenger / champion",
                f"{ll['challenger']:.4f} / {ll['champion']:.4f} (diff {ll['diff']:+.4f}, 95 % CI "
                f"[{ll['ci95'][0]:+.4f}, {ll['ci95'][1]:+.4f}], tolerance +{ll['tolerance']:.4f})",
            )
        )
    if slices.get("judged"):
        worst = (slices.get("table") or [{}])[0]
        rows.append(
            _row(
                "slices",
                f"{slices['judged']} judged, {len(slices.get('harmed') or [])} harmed; the largest difference {worst.get('column')}="
                f"{worst.get('value')} {worst.get('diff', 0):+.4f}",
            )
        )
    body = "\n".join(
        [
            f"The canary of **v{version}** finished its ramp and its evidence says **promote**.",
            "",
            *rows,
            "",
            canary.describe(result) if ll else "",
            "",
            f"**{APPROVE}**: v{version} becomes the champion. **{REJECT}**: it is taken out of service and "
            f"v{rollout.get('champion')} stays. No answer within {settings['timeout_hours']} h rolls it back.",
        ]
    )
    return {"subject": f"Promote v{version} to champion?", "body": body}


def outcome(version: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The decision an answer makes (``answer``: ``chosen``, ``by`` (None when nobody answered), ``timed_out``,
    ``reason``): ``decision`` promote only on an explicit approval, and why."""
    chosen, by, reason = answer.get("chosen") or [], answer.get("by"), (answer.get("reason") or "").strip()
    because = f": {reason}" if reason else ""
    if answer.get("timed_out") or by is None:
        return {"decision": "rollback", "why": f"no answer to the approval of v{version} by its deadline"}
    if chosen == [APPROVE]:
        return {"decision": "promote", "why": f"promotion of v{version} approved by {by}{because}"}
    return {"decision": "rollback", "why": f"promotion of v{version} rejected by {by}{because}"}
