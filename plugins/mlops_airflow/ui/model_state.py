"""The model's state on one page of the Airflow UI: registered versions, champion and challenger, the current
rollout, the last gate decision and the last drift report.

Served by the api-server under ``/mlops`` (``plugins/mlops_ui.py``), behind Airflow's own authentication (the
bearer token or the UI's session cookie; 401 without either):

``GET /mlops/models``                    the page (shown inside the Airflow UI as "Model state")
``GET /mlops/api/state``                 the same facts as JSON
``GET /mlops/gate/<run_key>/report``     a gate's HTML report from the lake

Nothing heavy is imported until the first request: the api-server, the scheduler and every task process import
the plugins, and only the api-server ever serves this page.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

MAX_VERSIONS = 25
RUN_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")

ICON = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' stroke='#017cee' "
        "stroke-width='2'><path d='M3 17l6-6 4 4 8-8'/><path d='M14 7h7v7'/></svg>")


# facts -------------------------------------------------------------------------------------------------------
def _versions() -> list[dict[str, Any]]:
    """Registered versions, newest first, with their aliases, gate tag, test AUC and registration time."""
    import mlflow

    from include.mlops.core import registry

    out = list(reversed(registry.versions()))[:MAX_VERSIONS]
    client = mlflow.MlflowClient(tracking_uri=registry.tracking_uri())
    for v in out:
        try:
            mv = client.get_model_version(registry.model_name(), v["version"])
            v["aliases"] = sorted(set(v.get("aliases") or []) | set(mv.aliases or []))  # search omits them
            v["gate"] = (mv.tags or {}).get("gate")
            v["registered"] = datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC")
            run = client.get_run(v["run_id"])
            v["test_auc"] = run.data.metrics.get("test_auc")
            v["reason"] = run.data.tags.get("reason")
            v["window"] = run.data.tags.get("data_window")
        except Exception as exc:  # noqa: BLE001 - a half-written version must not take the page down
            log.warning("model version %s: %s", v["version"], exc)
    return out


def _last_gate(lake) -> dict[str, Any] | None:
    """``reports/gate/latest.json``, else the decision of the newest version among ``reports/gate/*/``."""
    if lake.exists("reports", "gate", "latest.json"):
        return lake.read_json("reports", "gate", "latest.json")
    newest = None
    for key in lake.ls("reports", "gate"):
        if key.endswith(".json") or not lake.exists("reports", "gate", key, "decision.json"):
            continue
        d = lake.read_json("reports", "gate", key, "decision.json")
        d.setdefault("run_key", key)
        if newest is None or int(d.get("version") or 0) > int(newest.get("version") or 0):
            newest = d
    return newest


def state() -> dict[str, Any]:
    """Everything the page shows, as plain data (each part with its own error, so one failure shows as such)."""
    from include.mlops.core import registry
    from mlops_airflow.connections import get_lake

    facts: dict[str, Any] = {"model": registry.model_name(), "errors": {}}
    try:
        facts["versions"] = _versions()
        facts["champion"] = registry.alias_version("champion")
        facts["challenger"] = registry.alias_version("challenger")
        for alias in ("champion", "challenger"):
            for v in facts["versions"]:
                if facts[alias] and facts[alias]["version"] == v["version"] and alias not in v["aliases"]:
                    v["aliases"] = sorted([*v["aliases"], alias])
    except Exception as exc:  # noqa: BLE001
        facts["errors"]["registry"] = f"{type(exc).__name__}: {exc}"
        facts.setdefault("versions", [])
    try:
        lake = get_lake()
        facts["lake"] = lake.url
        facts["gate"] = _last_gate(lake)
        facts["drift"] = (lake.read_json("reports", "monitoring", "latest.json")
                          if lake.exists("reports", "monitoring", "latest.json") else None)
        facts["rollout"] = (lake.read_json("deployments", "rollout.json")
                            if lake.exists("deployments", "rollout.json") else None)
    except Exception as exc:  # noqa: BLE001
        facts["errors"]["lake"] = f"{type(exc).__name__}: {exc}"
    return facts


# page --------------------------------------------------------------------------------------------------------
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
            f"<td><code>{_e((v.get('run_id') or '')[:12])}</code></td></tr>")
    if not rows:
        return "<p class='muted'>No model version registered yet.</p>"
    return ("<table id='versions'><tr><th>version</th><th>aliases</th><th>gate</th><th>test AUC</th>"
            "<th>data window</th><th>reason</th><th>registered</th><th>MLflow run</th></tr>" + "".join(rows)
            + "</table>")


def _gate_html(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "<p class='muted'>No gate decision yet.</p>"
    verdict = _badge("PASSED", "pass") if gate.get("passed") else _badge(
        "FAILED: " + ", ".join(gate.get("failed") or []), "fail")
    champ = gate.get("champion_version")
    checks = "".join(
        f"<tr><td>{_badge('ok', 'pass') if c.get('passed') else _badge('FAIL', 'fail')}</td>"
        f"<td>{_e(c.get('name'))}</td><td>{_e(c.get('detail'))}</td></tr>" for c in gate.get("checks") or [])
    key = gate.get("run_key")
    link = (f" · <a href='../gate/{_e(key)}/report' target='_blank'>report</a>"
            if key and RUN_KEY.match(str(key)) else "")
    return (f"<p id='gate-verdict'>Version v{_e(gate.get('version'))} {verdict} against "
            f"{'champion v' + _e(champ) if champ else 'no champion (first model)'}; held-out days "
            f"{_e(', '.join(gate.get('holdout_days') or []))}{link}</p>"
            f"<table><tr><th></th><th>check</th><th>detail</th></tr>{checks}</table>")


def _drift_html(drift: dict[str, Any] | None) -> str:
    if not drift:
        return "<p class='muted' id='drift'>No monitoring report yet.</p>"
    fired = drift.get("fired")
    drifted = drift.get("drifted") or []
    signals = drift.get("signals") or {}
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v if not isinstance(v, float) else f'{v:.4f}')}</td></tr>"
                   for k, v in signals.items())
    return (f"<p id='drift'>{_e(drift.get('date'))}: "
            f"{_badge('retraining triggered', 'fail') if fired else _badge('no action needed', 'pass')}"
            f" · drifted features: {_e(', '.join(drifted)) if drifted else 'none'}"
            f" · report: <code>{_e(drift.get('report') or '–')}</code></p>"
            + (f"<table><tr><th>signal</th><th>value</th></tr>{rows}</table>" if rows else ""))


def _rollout_html(rollout: dict[str, Any] | None) -> str:
    if not rollout:
        return "<p class='muted'>No rollout yet.</p>"
    return (f"<p id='rollout'>v{_e(rollout.get('version'))}: <b>{_e(rollout.get('status'))}</b>"
            f" (champion before: {_e('v' + str(rollout['champion']) if rollout.get('champion') else 'none')},"
            f" canary share {_num(rollout.get('canary_share'), 2)}, started {_e(rollout.get('started_at'))}"
            f"{', finished ' + _e(rollout.get('finished_at')) if rollout.get('finished_at') else ''})</p>")


def render(facts: dict[str, Any]) -> str:
    champ, chall = facts.get("champion"), facts.get("challenger")
    errors = "".join(f"<p class='error'>{_e(k)} unavailable: {_e(v)}</p>" for k, v in facts["errors"].items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Model state · {_e(facts['model'])}</title>
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
<h1>Model state: {_e(facts['model'])}</h1>
<p class="muted">Registry and lake ({_e(facts.get('lake', '?'))}) as of
{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}</p>
{errors}
<div class="cards">
  <div class="card" id="champion">champion<div class="v">{'v' + _e(champ['version']) if champ else 'none'}</div></div>
  <div class="card" id="challenger">challenger<div class="v">{'v' + _e(chall['version']) if chall else 'none'}</div></div>
  <div class="card">versions<div class="v">{len(facts.get('versions') or [])}</div></div>
</div>
<h2>Rollout</h2>{_rollout_html(facts.get('rollout'))}
<h2>Last gate decision</h2>{_gate_html(facts.get('gate'))}
<h2>Last drift report</h2>{_drift_html(facts.get('drift'))}
<h2>Registered versions</h2>{_versions_html(facts)}
</body></html>"""


# app ---------------------------------------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """NaN and infinities (a metric on a slice without positives, say) become null: JSON has no such numbers."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def build_app():
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from airflow.api_fastapi.core_api.security import get_user

    app = FastAPI(title="MLOps model state", docs_url=None, redoc_url=None, openapi_url=None)
    auth = [Depends(get_user)]

    @app.get("/models", response_class=HTMLResponse, dependencies=auth)
    def models_page():
        return HTMLResponse(render(state()))

    @app.get("/api/state", dependencies=auth)
    def state_json():
        return JSONResponse(_json_safe(state()))

    @app.get("/gate/{run_key}/report", response_class=HTMLResponse, dependencies=auth)
    def gate_report(run_key: str):
        from mlops_airflow.connections import get_lake

        lake = get_lake()
        if not RUN_KEY.match(run_key) or not lake.exists("reports", "gate", run_key, "report.html"):
            raise HTTPException(status_code=404, detail="no such gate report")
        return HTMLResponse(lake.read_bytes("reports", "gate", run_key, "report.html").decode())

    @app.get("/icon.svg")
    def icon():
        return Response(ICON, media_type="image/svg+xml")

    return app


class LazyApp:
    """An ASGI app that builds the FastAPI app on its first request (FastAPI and MLflow stay unimported in the
    processes that load plugins but serve nothing)."""

    def __init__(self):
        self._app = None

    async def __call__(self, scope, receive, send):
        if self._app is None:
            self._app = build_app()
        await self._app(scope, receive, send)


app = LazyApp()
