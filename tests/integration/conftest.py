import pytest

from include.mlops.core.lake import Lake
from curation import curate_days


@pytest.fixture(scope="session")
def curated_lake(tmp_path_factory):
    lake = Lake((tmp_path_factory.mktemp("train-lake") / "lake").as_uri())
    curate_days(lake, "2013-01-01", 42)
    return lake
