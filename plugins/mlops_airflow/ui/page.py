"""The Model state page as HTML, from the facts (``facts.state()``); nothing here reads a store."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

RUN_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else _e(value if value is not None else "–")


def _badge(text: str, kind: str) -> str:
    return f"<span class='badge {kind}'>{_e(text)}</span>"


def _versions_html(facts: dict[str, Any]) -> str:
    rows = []
    for v in facts.get("versions", []):
        aliases = " ".join(_badge(a, a) for a in sorted(v.get("aliases") or []))
        gate = v.get("gate")
        rows.append(
            f"<tr><td>v{_e(v['version'])}</td><td>{aliases}</td>"
            f"<td>{_badge(gate, 'pass' if gate == 'passed' else 'fail') if gate else '–'}</td>"
            f"<td>{_num(v.get('test_auc'))}</td><td>{_e(v.get('window') or '–')}</td>"
            f"<td>{_e(v.get('reason') or '–')}</td><td>{_e(v.get('registered') or '–')}</td>"
            f"<td><code>{_e((v.get('run_id') or '')[:12])}</code></td></tr>"
        )
    if not rows:
        return "<p class='muted'>No model version registered yet.</p>"
    return (
        "<table id='versions'><tr><th>version</th><th>aliases</th><th>gate</th><th>test AUC</th>"
        "<th>data window</th><th>reason</th><th>registered</th><th>MLflow run</th></tr>" + "".join(rows) + "</table>"
    )


def _gate_html(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "<p class='muted'>No gate decision yet.</p>"
    verdict = (
        _badge("PASSED", "pass")
        if gate.get("passed")
        else _badge("FAILED: " + ", ".join(gate.get("failed") or []), "fail")
    )
    champ = gate.get("champion_version")
    checks = "".join(
        f"<tr><td>{_badge('ok', 'pass') if c.get('passed') else _badge('FAIL', 'fail')}</td>"
        f"<td>{_e(c.get('name'))}</td><td>{_e(c.get('detail'))}</td></tr>"
        for c in gate.get("checks") or []
    )
    key = gate.get("run_key")
    link = (
        f" · <a href='../gate/{_e(key)}/report' target='_blank'>report</a>" if key and RUN_KEY.match(str(key)) else ""
    )
    return (
        f"<p id='gate-verdict'>Version v{_e(gate.get('version'))} {verdict} against "
        f"{'champion v' + _e(champ) if champ else 'no champion (first model)'}; held-out days "
        f"{_e(', '.join(gate.get('holdout_days') or []))}{link}</p>"
        f"<table><tr><th></th><th>check</th><th>detail</th></tr>{checks}</table>"
    )


def _drift_html(drift: dict[str, Any] | None) -> str:
    if not drift:
        return "<p class='muted' id='drift'>No monitoring report yet.</p>"
    fired = drift.get("fired")
    drifted = drift.get("drifted") or []
    signals = drift.get("signals") or {}
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v if not isinstance(v, float) else f'{v:.4f}')}</td></tr>"
        for k, v in signals.items()
    )
    return (
        f"<p id='drift'>{_e(drift.get('date'))}: "
        f"{_badge('retraining triggered', 'fail') if fired else _badge('no action needed', 'pass')}"
        f" · drifted features: {_e(', '.join(drifted)) if drifted else 'none'}"
        f" · report: <code>{_e(drift.get('report') or '–')}</code></p>"
        + (f"<table><tr><th>signal</th><th>value</th></tr>{rows}</table>" if rows else "")
        + _service_html(drift.get("service"))
    )


def _service_html(service: dict[str, Any] | None) -> str:
    """The prediction service's check in that monitoring run (latency, errors, reachable): an alert, never a
    retraining signal."""
    if not service:
        return ""
    status = str(service.get("status") or "not checked")
    up = [k for k, v in (service.get("signals") or {}).items() if v]
    badge = _badge("alert: " + ", ".join(up), "fail") if up else _badge(status, "pass" if status == "ok" else "muted")
    reasons = "; ".join(service.get("reasons") or [])
    return f"<p id='service'>prediction service: {badge}{' · ' + _e(reasons) if reasons else ''}</p>"


def _stage(share: Any) -> str:
    return "shadow" if isinstance(share, (int, float)) and share <= 0 else f"{_num(share, 2)} of flights"


def _approval_html(rollout: dict[str, Any]) -> str:
    """The rollout's approval: a link to the question while it waits (the run's Required Actions page, on this
    host), the answer once given."""
    from urllib.parse import urlsplit

    a = rollout.get("approval") or {}
    if not a:
        return ""
    if a.get("status") == "waiting" and rollout.get("status") == "canary":
        url = urlsplit(str(a.get("link") or ""))
        href = url.path + (f"?{url.query}" if url.query else "")
        return (
            f"<p id='approval'>{_badge('approval waits', 'challenger')} promote v{_e(rollout.get('version'))}?"
            f" <a href='{_e(href)}'>answer it</a> ({_e(a.get('approvers'))}; by {_e(a.get('deadline'))},"
            " no answer: rolled back)</p>"
        )
    if a.get("status") == "waiting":
        return "<p id='approval'>approval: asked, never answered (the rollout ended without it)</p>"
    by = f" by {_e(a.get('by'))}" if a.get("by") else ""
    reason = f": {_e(a.get('reason'))}" if a.get("reason") else ""
    return f"<p id='approval'>approval: {_e(a.get('status'))}{by}{reason} ({_e(a.get('answered_at'))})</p>"


def _study_html(study: dict[str, Any] | None) -> str:
    """The latest tuning study (tune_model): its best trial against params.yaml's defaults, and its trials."""
    if not study:
        return "<p class='muted'>No tuning study yet (tune_model).</p>"
    best, base = study.get("best") or {}, (study.get("defaults") or {}).get("value")
    verdict = (
        _badge("beats the defaults", "pass") if study.get("beats_defaults") else _badge("not by the margin", "muted")
    )
    params = ", ".join(f"{_e(k)}={_e(v)}" for k, v in sorted((best.get("params") or {}).items()))
    rows = "".join(
        f"<tr><td>{_e(t.get('number'))}</td><td>{_e(t.get('round'))}</td><td>{_e(t.get('state'))}</td>"
        f"<td>{_num(t.get('value'), 4)}</td><td>{_e(', '.join(f'{k}={v}' for k, v in sorted((t.get('params') or {}).items())))}</td></tr>"
        for t in study.get("trials") or []
    )
    return (
        f"<p id='study'>study {_e(study.get('study_id'))} ({_e(study.get('kind'))}, finished"
        f" {_e(study.get('finished_at'))}): best validation log-loss {_num(best.get('value'), 4)}"
        f" (trial {_e(best.get('number'))}) against the defaults' {_num(base, 4)} {verdict}; best: {params}</p>"
        "<table id='trials'><tr><th>trial</th><th>round</th><th>state</th><th>validation log-loss</th>"
        f"<th>parameters</th></tr>{rows}</table>"
    )


def _rollout_html(rollout: dict[str, Any] | None) -> str:
    if not rollout:
        return "<p class='muted'>No rollout yet.</p>"
    stages = rollout.get("stages") or []
    at = (
        f" stage {_e(_stage(rollout.get('canary_share')))} ({int(rollout.get('stage', 0)) + 1} of {len(stages)}),"
        if stages and rollout.get("status") == "canary"
        else f" canary share {_num(rollout.get('canary_share'), 2)},"
    )
    rows = "".join(
        f"<tr><td>{_e(_stage(h.get('share')))}</td><td>{_e(h.get('entered_at'))}</td><td>{_e(h.get('left_at'))}</td>"
        f"<td>{_e(h.get('outcome') or 'running')}</td><td>{_e(h.get('why'))}</td></tr>"
        for h in rollout.get("history") or []
    )
    table = (
        "<table id='ramp'><tr><th>stage</th><th>entered</th><th>left</th><th>outcome</th><th>why</th></tr>"
        f"{rows}</table>"
        if rows
        else ""
    )
    return (
        f"<p id='rollout'>v{_e(rollout.get('version'))}: <b>{_e(rollout.get('status'))}</b>"
        f" (champion before: {_e('v' + str(rollout['champion']) if rollout.get('champion') else 'none')},"
        f"{at} started {_e(rollout.get('started_at'))}"
        f"{', finished ' + _e(rollout.get('finished_at')) if rollout.get('finished_at') else ''})</p>"
        f"{_approval_html(rollout)}{table}"
    )


def _who(actor: dict[str, Any]) -> str:
    if actor.get("kind") == "dag_run":
        return f"{actor.get('user') or '?'} ({actor.get('dag_id')} {actor.get('run_id')})"
    return str(actor.get("user") or actor.get("dag_id") or actor.get("kind"))


def _audit_html(trail: dict[str, Any] | None) -> str:
    if trail is None:
        return "<p class='muted'>The audit trail could not be read.</p>"
    if not trail["records"]:
        return "<p class='muted'>No decision recorded yet.</p>"
    verdict = (
        _badge("chain verified", "pass")
        if trail["ok"]
        else _badge("BROKEN", "fail") + " " + _e("; ".join(trail["problems"]))
    )
    rows = "".join(
        f"<tr><td>{_e(r.get('at'))}</td><td>v{_e(r.get('version'))}</td><td>{_e(r.get('event'))}</td>"
        f"<td>{_e(_who(r.get('actor') or {}))}</td><td>{_e(r.get('why'))}</td></tr>"
        for r in trail["recent"]
    )
    return (
        f"<p id='audit'>{trail['records']} decision(s) recorded: {verdict} (the latest {len(trail['recent'])} below; "
        "<code>/mlops/api/history/&lt;version&gt;</code> gives a version's as JSON)</p>"
        "<table id='decisions'><tr><th>when</th><th>version</th><th>decision</th><th>who</th><th>why</th></tr>"
        f"{rows}</table>"
    )


def render(facts: dict[str, Any]) -> str:
    champ, chall = facts.get("champion"), facts.get("challenger")
    errors = "".join(f"<p class='error'>{_e(k)} unavailable: {_e(v)}</p>" for k, v in facts["errors"].items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Model state · {_e(facts["model"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }}
h1 {{ font-size: 1.4rem; margin: 0 0 .25rem; }} h2 {{ font-size: 1.1rem; margin: 1.5rem 0 .5rem; }}
table {{ border-collapse: collapse; font-size: .9rem; }}
th, td {{ border-bottom: 1px solid #e2e8f0; padding: .3rem .7rem; text-align: left; }}
.cards {{ display: flex; gap: 1rem; }}
.card {{ border: 1px solid #e2e8f0; border-radius: 8px; padding: .75rem 1.25rem; min-width: 12rem; }}
.card .v {{ font-size: 1.6rem; font-weight: 600; }}
.badge {{ border-radius: 4px; padding: 0 .4rem; font-size: .8rem; }}
.champion, .pass {{ background: #c6f6d5; }} .challenger {{ background: #fefcbf; }} .fail {{ background: #fed7d7; }}
.muted {{ color: #718096; }} .error {{ color: #c53030; }}
</style></head>
<body>
<h1>Model state: {_e(facts["model"])}</h1>
<p class="muted">Registry and lake ({_e(facts.get("lake", "?"))}) as of
{datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}</p>
{errors}
<div class="cards">
  <div class="card" id="champion">champion<div class="v">{"v" + _e(champ["version"]) if champ else "none"}</div></div>
  <div class="card" id="challenger">challenger<div class="v">{"v" + _e(chall["version"]) if chall else "none"}</div></div>
  <div class="card">versions<div class="v">{len(facts.get("versions") or [])}</div></div>
</div>
<h2>Rollout</h2>{_rollout_html(facts.get("rollout"))}
<h2>Decisions (audit trail)</h2>{_audit_html(facts.get("audit"))}
<h2>Last gate decision</h2>{_gate_html(facts.get("gate"))}
<h2>Latest tuning study</h2>{_study_html(facts.get("study"))}
<h2>Last drift report</h2>{_drift_html(facts.get("drift"))}
<h2>Registered versions</h2>{_versions_html(facts)}
</body></html>"""
