"""The lake refuses one flight date of the prediction log: requests keep being answered and /health answers 200
with "degraded"; monitor_model's service_health, run as the task runs it against the real service's /metrics,
sends Slack (a real HTTP endpoint) a [SERVICE] alert naming the spilled records and the lake's refusals, and the
report's section carries the prediction_log signal; nothing retrains."""

from __future__ import annotations

import time

import httpx

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.simulate.traffic import requests_for

STUCK = "2013-01-23"


class TaskInstance:
    dag_id, task_id, try_number, log_url = "monitor_model", "service_health", 1, None


def test_a_date_the_lake_refuses_raises_the_service_alert(slack, tmp_path, monkeypatch):
    from servers import serve
    from tiny_models import tiny_served

    from include.mlops.serve.app import create_app
    from include.mlops.serve.models import ModelStore
    from mlops_airflow.tasks import monitor_model

    root = tmp_path / "service-lake"
    blocker = root / layout.predictions(STUCK)  # a plain file where the date's folder goes: refused even for root
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    model = tiny_served("1", 0)
    store = ModelStore(lambda: ({"champion": "1", "challenger": None}, 0.0), lambda v: model)
    app = create_app(store, Lake(root.as_uri()), flush_s=0.1, spill_dir=tmp_path / "spill", log_retry_s=0.3)
    with serve(app) as url:
        r = httpx.post(url + "/predict/batch", json={"flights": requests_for(STUCK)[:40]}, timeout=30)
        assert r.status_code == 200, r.text[:300]
        deadline = time.time() + 5
        while (h := httpx.get(url + "/health")).json()["spilled_log"] < 40 and time.time() < deadline:
            time.sleep(0.1)
        assert h.status_code == 200 and h.json()["status"] == "degraded", h.json()  # kept by load balancers
        monkeypatch.setenv("MLOPS_SERVE_URL", url)
        section = monitor_model.service_health({"params": {}, "ti": TaskInstance(), "ds": "2013-01-23"})
    assert section["signals"]["prediction_log"] and section["log_spilled"] == 40 and section["log_lake_failures"] >= 1
    [msg] = [t for t in slack.texts() if t.startswith("[SERVICE]")]
    assert msg.startswith("[SERVICE] Prediction service: prediction log: 40 record(s) in the spill folder, over 0"), msg
    assert "write(s) refused by the lake" in msg and "does not retrain" in msg, msg
