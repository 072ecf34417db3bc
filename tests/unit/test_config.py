import pytest

from include.mlops.core.config import Settings
from include.mlops.core.schema import DatasetSpec, dataset, load_datasets


def test_settings_defaults_follow_mlops_home(tmp_path):
    s = Settings.from_env({"MLOPS_HOME": str(tmp_path)})
    assert s.home == tmp_path.resolve()
    assert s.lake_url == (tmp_path / "lake").as_uri()
    assert (s.expectations_dir / "flights.json").exists()


def test_lake_url_override():
    s = Settings.from_env({"MLOPS_HOME": "/tmp/x", "MLOPS_LAKE_URL": "s3://bucket/prefix/"})
    assert s.lake_url == "s3://bucket/prefix"


def test_flights_spec_declares_key_label_and_date_columns():
    spec = dataset("flights")
    assert spec.key == ("year", "month", "day", "carrier", "flight", "origin")
    assert spec.label.source == "arr_delay" and spec.label.threshold == 15
    assert spec.event_time == "time_hour"
    assert spec.columns["time_hour"].type == "timestamp"


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"columns": {"a": "int"}, "key": ["b"]}, "key columns ['b'] are not declared"),
        ({"columns": {"a": "decimal"}, "key": ["a"]}, "column types must be one of"),
        ({"key": ["a"]}, "'columns' is required"),
        ({"columns": {"a": "int"}, "key": ["a"], "colums": {}}, "unknown keys ['colums']"),
    ],
)
def test_bad_specs_are_named(raw, message):
    with pytest.raises(ValueError, match="dataset 'mine'") as err:
        DatasetSpec.from_dict("mine", raw)
    assert message in str(err.value)


def test_user_datasets_file(tmp_path):
    f = tmp_path / "ds.yaml"
    f.write_text("datasets:\n  sales:\n    columns: {id: int, amount: float}\n    key: [id]\n")
    specs = load_datasets(f)
    assert specs["sales"].suite == "sales" and specs["sales"].landing_file == "sales.csv"
    with pytest.raises(KeyError, match="not declared"):
        dataset("flights", Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_DATASETS": str(f)}))
