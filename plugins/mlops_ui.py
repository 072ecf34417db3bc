"""Airflow UI plugin: "Model state", a page in the Airflow UI with the registered model versions, champion and
challenger, the current rollout, the last gate decision and the last drift report.

The page is a FastAPI app mounted by the api-server under ``/mlops`` (behind Airflow's authentication) and shown
inside the UI as an external view (``/plugin/model-state``). Cheap to import: the app is built on its first
request (``mlops_airflow/ui/model_state.py``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlops_airflow.ui.app import app


class MlopsModelStatePlugin(AirflowPlugin):
    name = "mlops_model_state"
    fastapi_apps = [{"app": app, "url_prefix": "/mlops", "name": "MLOps model state"}]
    external_views = [
        {
            "name": "Model state",
            "href": "mlops/models",  # relative to the UI's base URL
            "icon": "mlops/icon.svg",
            "url_route": "model-state",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
