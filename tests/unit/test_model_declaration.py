"""The models: list of the declaration file: what a model declares, the names derived from it, the three kinds of
binary label, and the errors a wrong declaration gets (each naming the file, the model, the key and the column)."""

import pandas as pd
import pytest
import yaml

from include.mlops.core import schema
from include.mlops.core.config import Settings
from include.mlops.core.models import Label
from include.mlops.evaluate.config import GateConfig
from include.mlops.monitor.config import MonitorConfig

PATIENTS = {
    "columns": {
        "patient": {"type": "int", "required": True},
        "seen_on": {"type": "string", "required": True},
        "age": {"type": "float", "feature": "numeric"},
        "ward": {"type": "string", "feature": "categorical"},
        "outcome": {"type": "string", "after_event": True},
        "died": {"type": "bool", "after_event": True},
        "stay_days": {"type": "float", "after_event": True},
    },
    "key": ["patient"],
}


def _write(tmp_path, models_, datasets=None):
    f = tmp_path / "datasets.yaml"
    f.write_text(yaml.safe_dump({"datasets": datasets or {"patients": PATIENTS}, "models": models_}))
    return f


def _settings(tmp_path, f):
    return Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_DATASETS": str(f)})


def test_the_flights_model_declares_todays_names():
    m = schema.model()
    assert (m.name, m.dataset, m.experiment) == ("flight_delay", "flights", "flight-delay")
    assert (m.score, m.rows, m.key_field) == ("delay_probability", "flights", "flight_key")
    assert m.key == ("year", "month", "day", "carrier", "flight", "origin")
    assert m.label == Label(source="arr_delay", name="label", threshold=15.0)
    assert m.join.dataset == "weather" and m.join.by == ("origin", "time_hour")
    # curation writes that label into the curated flights (the data set knows the label of its model)
    assert schema.dataset("flights").label == m.label


def test_the_registered_name_is_the_declared_one_unless_a_deployment_overrides_it(monkeypatch):
    monkeypatch.delenv("MLOPS_MODEL_NAME", raising=False)
    assert schema.model().registered_name == "flight_delay"
    monkeypatch.setenv("MLOPS_MODEL_NAME", "flight_delay_staging")
    assert schema.model().registered_name == "flight_delay_staging"


@pytest.mark.parametrize(
    "label, values, expected",
    [
        (Label("stay_days", threshold=7), [3.0, 7.0, 7.5, None], [0, 0, 1, None]),
        (Label("outcome", positive=("dead", "transferred")), ["home", "dead", None, "transferred"], [0, 1, None, 1]),
        (Label("died"), [True, False, None, True], [1, 0, None, 1]),
        (Label("grade", positive=(3, 4)), [1.0, 3.0, None, 4.0], [0, 1, None, 1]),  # numbers as numbers
    ],
)
def test_the_three_kinds_of_binary_label(label, values, expected):
    dtype = {"boolean": "boolean", "threshold": "Float64"}.get(
        label.kind, "Float64" if label.source == "grade" else "string"
    )
    labelled, out = label.apply(pd.Series(values, dtype=dtype))
    assert labelled.tolist() == [v is not None for v in values]
    assert [None if pd.isna(v) else int(v) for v in out] == expected
    assert str(out.dtype) == "Int8"


def test_a_model_on_another_data_set_derives_its_names(tmp_path):
    f = _write(
        tmp_path,
        [{"name": "readmission", "dataset": "patients", "label": {"source": "outcome", "positive": ["dead"]}}],
    )
    s = _settings(tmp_path, f)
    m = schema.model(settings=s)
    assert (m.experiment, m.score, m.rows, m.key_field, m.join) == ("readmission", "score", "rows", "key", None)
    assert m.label.describe() == "outcome in ['dead']"
    # no join: the features are the data set's own tagged columns
    f_ = schema.features(s, m)
    assert (f_.numeric, f_.categorical, f_.joined) == (["age"], ["ward"], [])
    # a key without year/month/day columns is its columns, /-separated
    assert schema.row_key(pd.DataFrame({"patient": [7, 12]}), m, s).tolist() == ["7", "12"]


BAD = [
    ({"name": "m", "dataset": "people", "label": "died"}, "model 'm', dataset: 'people' is not a declared data set"),
    ({"name": "m", "dataset": "patients", "label": {"source": "los"}}, "label source 'los' is not a declared column"),
    ({"name": "m", "dataset": "patients"}, "a model needs a label"),
    (
        {"name": "m", "dataset": "patients", "label": {"source": "ward", "threshold": 3}},
        "a threshold label needs a number column; 'ward' is string",
    ),
    ({"name": "m", "dataset": "patients", "label": {"source": "outcome"}}, "The outcome is binary"),
    (
        {"name": "m", "dataset": "patients", "label": {"source": "died", "name": "age"}},
        "label name 'age' is a declared column",
    ),
    (
        {"name": "m", "dataset": "patients", "label": "died", "key": ["patient", "visit"]},
        "model 'm', key: ['visit'] are not columns of data set 'patients'",
    ),
    (
        {"name": "m", "dataset": "patients", "label": "died", "joins": [{"dataset": "wards", "by": ["ward"]}]},
        "joins[0]: 'wards' is not a declared data set",
    ),
    ({"name": "m", "dataset": "patients", "label": "died", "scores": "p"}, "unknown keys ['scores']"),
    ({"name": "m", "dataset": "patients", "label": "died", "score": "risk of death"}, "not a valid field name"),
    ({"name": "m", "dataset": "patients", "label": "died", "lake": "../m"}, "lake: '../m': each folder is a plain"),
    ({"name": "m", "dataset": "patients", "label": "died", "lake": "models/training"}, "got 'training'"),
    ({"name": "m", "dataset": "patients", "label": "died", "lake": "curated/m"}, "got 'curated'"),
    ({"name": "m", "dataset": "patients", "label": "died", "lake": "a//b"}, "got ''"),
    ({"name": "m", "dataset": "patients", "label": "died", "lake": 3}, "a folder in the lake (a string"),
    (
        {
            "name": "m x",
            "dataset": "patients",
            "label": "died",
            "dags": {"train": "t", "deploy": "d", "monitor": "o", "tune": "u"},
        },
        "lake: 'models/m x': each folder",
    ),
]


@pytest.mark.parametrize("entry, message", BAD, ids=[m for _, m in BAD])
def test_a_wrong_model_is_named_with_its_file_and_key(tmp_path, entry, message):
    f = _write(tmp_path, [entry])
    with pytest.raises(ValueError) as err:
        schema.load_declaration(f)
    assert message in str(err.value) and str(f) in str(err.value)


def test_two_models_of_one_data_set_share_its_label(tmp_path):
    f = _write(
        tmp_path,
        [
            {"name": "a", "dataset": "patients", "label": "died"},
            {"name": "b", "dataset": "patients", "label": {"source": "stay_days", "threshold": 7}},
        ],
    )
    with pytest.raises(ValueError, match="models scoring data set 'patients' declare different labels"):
        schema.load_declaration(f)
    f = _write(tmp_path, [{"name": "a", "dataset": "patients", "label": "died"}] * 2)
    with pytest.raises(ValueError, match="model 'a' is declared twice"):
        schema.load_declaration(f)


def test_a_models_places_are_in_its_own_folder(tmp_path, monkeypatch):
    """The flights model declares its places at the lake's root (where existing lakes hold them); another model's
    are under models/<name>/ unless it names a folder; two models never share one."""
    from include.mlops.core import layout

    flights = (
        layout.training("r1"),
        layout.gate("r1"),
        layout.gate_latest(),
        layout.predictions("2013-02-03"),
        layout.rollout(),
        layout.rollout_history("2013-02-03T04:05:06", "3"),
        layout.canary_evidence("3"),
        layout.monitoring("2013-02-03"),
        layout.triggers(),
        layout.service_scrape(),
    )
    assert flights == (
        "training/r1",
        "reports/gate/r1",
        ("reports/gate", "latest.json"),
        "predictions/date=2013-02-03",
        ("deployments", "rollout.json"),
        ("deployments/history", "2013-02-03T040506-v3.json"),
        ("reports/deployments", "v3.json"),
        "reports/monitoring/date=2013-02-03",
        ("reports/monitoring", "triggers.json"),
        ("reports/monitoring", "service_scrape.json"),
    )
    f = _write(tmp_path, [{"name": "readmission", "dataset": "patients", "label": "died"}])
    monkeypatch.setenv("MLOPS_DATASETS", str(f))
    assert schema.model().lake == "models/readmission"
    assert (layout.training("r1"), layout.rollout(), layout.predictions("2020-01-02")) == (
        "models/readmission/training/r1",
        ("models/readmission/deployments", "rollout.json"),
        "models/readmission/predictions/date=2020-01-02",
    )
    assert layout.curated("patients", "2020-01-02") == "curated/patients/date=2020-01-02"  # the data's: shared
    f = _write(tmp_path, [{"name": "readmission", "dataset": "patients", "label": "died", "lake": "wards/icu"}])
    assert layout.gate("r1") == "wards/icu/reports/gate/r1"
    f = _write(
        tmp_path,
        [
            {"name": "a", "dataset": "patients", "label": "died", "lake": ""},
            {"name": "b", "dataset": "patients", "label": "died", "lake": ""},
        ],
    )
    with pytest.raises(ValueError, match="model 'b', lake: '' is model 'a''s folder too"):
        schema.load_declaration(f)


def test_several_models_need_a_name_to_pick_one(tmp_path):
    f = _write(
        tmp_path,
        [{"name": "a", "dataset": "patients", "label": "died"}, {"name": "b", "dataset": "patients", "label": "died"}],
    )
    s = _settings(tmp_path, f)
    with pytest.raises(ValueError, match=r"declares 2 models \(\['a', 'b'\]\): name the one meant"):
        schema.model(settings=s)
    assert schema.model("b", settings=s).name == "b"
    assert [m.name for m in schema.scoring("patients", s)] == ["a", "b"]


def test_a_label_on_the_data_set_says_where_it_moved(tmp_path):
    f = tmp_path / "datasets.yaml"
    f.write_text(yaml.safe_dump({"datasets": {"patients": PATIENTS | {"label": {"source": "died"}}}}))
    with pytest.raises(ValueError, match=r"dataset 'patients': \['label'\] belong to the model .* models: list"):
        schema.load_declaration(f)


def test_settings_files_name_only_the_models_features():
    with pytest.raises(ValueError) as err:
        GateConfig(slice_columns=["origin", "airline"])
    assert "gate.yaml" in str(err.value) and "slice_columns names ['airline']" in str(err.value)
    with pytest.raises(ValueError, match=r"monitoring.yaml.*ignore names \['arr_delay'\]"):
        MonitorConfig(ignore=["arr_delay"])
    with pytest.raises(ValueError, match=r"features names \['tmep'\]"):
        MonitorConfig(features={"tmep": {"psi": 1.0}})


def test_training_and_monitoring_start_on_the_models_declared_inputs(tmp_path, monkeypatch):
    from mlops_airflow.blocks import assets

    # the flights model: its data set, and monitoring on flights with their weather, or a quarantined flights drop
    assert [a.name for a in assets.training_inputs()] == ["curated_flights"]
    flights = assets.monitoring_inputs()
    assert {a.name for a in flights.objects[0].objects} == {"curated_flights", "curated_weather"}
    assert flights.objects[1].name == "quarantined_flights"
    # a model without a joined data set: its own data set alone
    f = _write(tmp_path, [{"name": "m", "dataset": "patients", "label": "died"}])
    monkeypatch.setenv("MLOPS_DATASETS", str(f))
    assert [a.name for a in assets.training_inputs()] == ["curated_patients"]
    alone = assets.monitoring_inputs()
    assert [a.name for a in alone.objects] == ["curated_patients", "quarantined_patients"]
