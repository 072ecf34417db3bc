import pandas as pd
import pytest

from include.mlops.core import layout
from include.mlops.core.lake import Lake, as_date


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def test_roundtrip_bytes_json_and_listing(lake):
    lake.write_bytes(b"abc", "landing/flights/date=2013-01-02/flights.csv")
    lake.write_json({"a": 1}, "reports", "r.json")
    assert lake.read_bytes("landing/flights/date=2013-01-02", "flights.csv") == b"abc"
    assert lake.read_json("reports/r.json") == {"a": 1}
    assert lake.ls("landing/flights") == ["date=2013-01-02"]
    assert layout.partitions(lake, "landing", "flights") == [as_date("2013-01-02")]
    assert lake.ls("nowhere") == []
    assert lake.uri("curated", "x") == lake.url + "/curated/x"


def test_partition_names_and_unknown_zone():
    assert layout.partition("curated", "flights", "2013-03-04") == "curated/flights/date=2013-03-04"
    with pytest.raises(ValueError, match="unknown lake zone"):
        layout.partition("archive", "flights", "2013-03-04")
    with pytest.raises(ValueError, match="not a date"):
        as_date("yesterday")


def test_replace_partition_leaves_only_the_new_file(lake):
    folder = "curated/t/date=2013-01-01"
    lake.write_bytes(b"stale", folder, "part-00007.parquet")
    df = pd.DataFrame({"a": [1, 2]})
    lake.replace_partition(df, folder, "part-00000.parquet")
    lake.replace_partition(df, folder, "part-00000.parquet")
    assert lake.ls(folder) == ["part-00000.parquet"]
    pd.testing.assert_frame_equal(lake.read_parquet(folder, "part-00000.parquet"), df)


def test_copy_and_rm(lake):
    lake.write_bytes(b"x", "a/b/c.txt")
    lake.copy(("a/b", "c.txt"), ("q", "c.txt"))
    lake.rm("a")
    assert not lake.exists("a/b/c.txt") and lake.read_bytes("q/c.txt") == b"x"
    lake.rm("a")  # absent is fine
