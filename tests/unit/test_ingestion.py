import pandas as pd
import pytest

from include.mlops.core.config import Settings
from include.mlops.core.lake import Lake
from include.mlops.core.schema import dataset
from include.mlops.ingest import ingestion
from include.mlops.ingest.validation import BatchRejected
from include.mlops.simulate.upstream import Upstream, day_table

SETTINGS = Settings.from_env()


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def _ingest(lake, name, date):
    b = ingestion.batch(dataset(name), date)
    ingestion.extract(lake, b)
    ingestion.check(lake, b, SETTINGS)
    return ingestion.curate(lake, b)


def test_curated_partition_is_typed_labelled_and_complete(lake):
    Upstream(lake).publish("2013-01-02", "flights")
    info = _ingest(lake, "flights", "2013-01-02")
    df = lake.read_parquet("curated/flights/date=2013-01-02/part-00000.parquet")
    raw = day_table("flights", "2013-01-02")
    assert info["rows"] == len(df) == len(raw)
    assert str(df["time_hour"].dtype).startswith("datetime64") and str(df["time_hour"].dt.tz) == "UTC"
    labelled = df[df["is_labelled"]]
    assert (labelled["label"] == (labelled["arr_delay"] > 15).astype(int)).all()
    assert df.loc[~df["is_labelled"], "label"].isna().all()  # cancelled flights kept, unlabelled
    assert (~df["is_labelled"]).sum() == raw["arr_delay"].isna().sum()
    assert (df["event_hour_utc"] == df["time_hour"].dt.hour).all()
    assert not df.duplicated(list(dataset("flights").key)).any()
    assert not lake.ls("staging/flights")


def test_rerun_rewrites_the_partition_identically(lake):
    up = Upstream(lake)
    up.publish("2013-01-02", "weather")
    _ingest(lake, "weather", "2013-01-02")
    first = lake.read_bytes("curated/weather/date=2013-01-02/part-00000.parquet")
    up.publish("2013-01-02", "weather")
    _ingest(lake, "weather", "2013-01-02")
    assert lake.ls("curated/weather/date=2013-01-02") == ["part-00000.parquet"]
    assert lake.read_bytes("curated/weather/date=2013-01-02/part-00000.parquet") == first


def test_rejected_drop_moves_to_quarantine_untouched(lake):
    up = Upstream(lake)
    up.publish("2013-01-02", "flights", fault="null_keys")
    dropped = lake.read_bytes("landing/flights/date=2013-01-02/flights.csv")
    b = ingestion.batch(dataset("flights"), "2013-01-02")
    ingestion.extract(lake, b)
    with pytest.raises(BatchRejected, match="expect_column_values_to_not_be_null") as err:
        ingestion.check(lake, b, SETTINGS)
    q = "quarantine/flights/date=2013-01-02"
    assert err.value.quarantine_uri == lake.uri(q)
    assert lake.read_bytes(q, "flights.csv") == dropped
    report = lake.read_json(q, "report.json")
    assert report["failed_rules"] == ["expect_column_values_to_not_be_null(carrier)"]
    assert report["failures"][0]["sample_rows"]
    assert not lake.exists("landing/flights/date=2013-01-02") and not lake.exists("curated/flights/date=2013-01-02")
    # a second bad drop for the same date keeps the first rejection in history/
    up.publish("2013-01-02", "flights", fault="extra_column")
    ingestion.extract(lake, b)
    with pytest.raises(BatchRejected):
        ingestion.check(lake, b, SETTINGS)
    (older,) = lake.ls(q, "history")
    assert lake.read_bytes(q, "history", older, "flights.csv") == dropped
    assert lake.read_json(q, "report.json")["failed_rules"] == ["expect_table_columns_to_match_set"]


def test_extract_without_complete_drop_names_the_batch(lake):
    Upstream(lake).publish("2013-01-02", "flights", fault="late", delay_s=30)
    with pytest.raises(FileNotFoundError, match="batch flights/2013-01-02: no complete drop"):
        ingestion.extract(lake, ingestion.batch(dataset("flights"), "2013-01-02"))


def test_transform_sorts_by_key():
    raw = day_table("weather", "2013-01-02").sample(frac=1, random_state=1)
    out = ingestion.transform(raw, dataset("weather"), pd.Timestamp("2013-01-02").date())
    assert out[["origin", "time_hour"]].equals(out[["origin", "time_hour"]].sort_values(["origin", "time_hour"]))
