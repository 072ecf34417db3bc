"""The model's state on one page of the Airflow UI: registered versions, champion and challenger, the current
rollout, the last gate decision and the last drift report.

Served by the api-server under ``/mlops`` (``plugins/mlops_ui.py``), behind Airflow's own authentication (the
bearer token or the UI's session cookie; 401 without either):

``GET /mlops/models``                    the page (shown inside the Airflow UI as "Model state")
``GET /mlops/api/state``                 the same facts as JSON
``GET /mlops/api/history[/<version>]``   the audit trail's decisions (of one version), oldest first, as JSON
``GET /mlops/gate/<run_key>/report``     a gate's HTML report from the lake

Nothing heavy is imported until the first request: the api-server, the scheduler and every task process import
the plugins, and only the api-server ever serves this page.
"""

from __future__ import annotations

ICON = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' stroke='#017cee' "
    "stroke-width='2'><path d='M3 17l6-6 4 4 8-8'/><path d='M14 7h7v7'/></svg>"
)


def build_app():
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    app = FastAPI(title="MLOps model state", docs_url=None, redoc_url=None, openapi_url=None)
    auth = [Depends(get_user)]

    from include.mlops.core.jsonsafe import json_safe

    from .facts import state
    from .page import RUN_KEY, render

    @app.get("/models", response_class=HTMLResponse, dependencies=auth)
    def models_page():
        return HTMLResponse(render(state()))

    @app.get("/api/state", dependencies=auth)
    def state_json():
        return JSONResponse(json_safe(state()))

    @app.get("/api/history", dependencies=auth)
    def history_json():
        return JSONResponse(_history(None))

    @app.get("/api/history/{version}", dependencies=auth)
    def version_history_json(version: str):
        if not version.isdigit():
            raise HTTPException(status_code=404, detail="a version is a number")
        return JSONResponse(_history(version))

    def _history(version: str | None) -> dict:
        """A version's decisions (or all of them), oldest first, and whether the chain holds."""
        from include.mlops.core import audit
        from mlops_airflow.blocks.connections import get_lake

        lake = get_lake()
        checked = audit.verify(lake)
        records = audit.history(lake, version) if checked["records"] else []
        return json_safe(
            {"version": version, "verified": checked["ok"], "problems": checked["problems"], "records": records}
        )

    @app.get("/gate/{run_key}/report", response_class=HTMLResponse, dependencies=auth)
    def gate_report(run_key: str):
        from include.mlops.core import layout
        from mlops_airflow.blocks.connections import get_lake

        lake = get_lake()
        if not RUN_KEY.match(run_key) or not lake.exists(layout.gate(run_key), layout.GATE_REPORT):
            raise HTTPException(status_code=404, detail="no such gate report")
        return HTMLResponse(lake.read_bytes(layout.gate(run_key), layout.GATE_REPORT).decode())

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
