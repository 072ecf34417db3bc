"""The service's wire names come from the model's declaration: a model that names its batch list, its key and its
score otherwise is answered, documented and logged under those names (the flights model keeps ``flights``,
``flight_key`` and ``delay_probability``, its ``Flight`` body and the log's ``flight_date``)."""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest
from tiny_service import AUTH, tiny_service

from include.mlops.core import layout
from include.mlops.core.config import PROJECT_ROOT
from include.mlops.core.lake import Lake


@pytest.fixture
def renamed(tmp_path, monkeypatch):
    text = (PROJECT_ROOT / "include" / "config" / "datasets.yaml").read_text()
    text = text.replace("score: delay_probability", "score: late_risk").replace(
        "api: {rows: flights, key: flight_key}", "api: {rows: legs, key: leg_id}"
    )
    assert "late_risk" in text and "leg_id" in text
    f = tmp_path / "datasets.yaml"
    f.write_text(text)
    monkeypatch.setenv("MLOPS_DATASETS", str(f))


def test_a_model_answers_documents_and_logs_under_its_declared_names(renamed, tmp_path):
    from include.mlops.simulate.traffic import requests_for

    rows = requests_for("2013-01-02")[:5]
    with tiny_service(tmp_path) as url:
        ok = httpx.post(url + "/predict/batch", json={"legs": rows}, headers=AUTH, timeout=30)
        assert ok.status_code == 200, ok.text
        answers = ok.json()["predictions"]
        assert len(answers) == 5 and all(set(a) == {"leg_id", "late_risk", "version", "arm"} for a in answers)
        assert answers[0]["leg_id"].startswith("2013-01-02/")
        # the flights model's name is not this model's
        old = httpx.post(url + "/predict/batch", json={"flights": rows}, headers=AUTH, timeout=30)
        assert old.status_code == 422 and 'a batch is {"legs": [...]}' in old.json()["detail"][0]["msg"], old.text
        doc = httpx.get(url + "/openapi.json", timeout=30).json()
        prediction = doc["components"]["schemas"]["Prediction"]
        assert prediction["required"] == ["leg_id", "late_risk", "version", "arm"]
        assert "arr_delay > 15" in prediction["properties"]["late_risk"]["description"]
        # the names derived from the declaration: the body of one entry, the routes' words, the title
        assert "Leg" in doc["components"]["schemas"] and "Flight" not in doc["components"]["schemas"]
        assert doc["paths"]["/predict"]["post"]["summary"] == "Predict one leg"
        assert doc["paths"]["/predict/batch"]["post"]["summary"] == "Predict a batch of legs"
        assert doc["info"]["title"] == "Flight delay prediction"  # the model's name is unchanged here
        lake = Lake((tmp_path / "service-lake").as_uri())
        deadline = time.time() + 30
        while not lake.ls(layout.predictions("2013-01-02")) and time.time() < deadline:
            time.sleep(0.5)
    files = lake.ls(layout.predictions("2013-01-02"))
    assert files, "the prediction log wrote nothing"
    logged = pd.concat([lake.read_parquet(layout.predictions("2013-01-02"), f) for f in files])
    assert "leg_id" in logged.columns and "flight_key" not in logged.columns
    assert "leg_id_date" in logged.columns and "flight_date" not in logged.columns  # api.key leg_id: leg_id_date
    assert set(logged["leg_id_date"]) == {"2013-01-02"}
    assert sorted(logged["leg_id"]) == sorted(a["leg_id"] for a in answers)
