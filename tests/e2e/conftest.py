"""Real Airflow runs (``dag.test()``) against a real metadata DB, lake, S3 API (moto server) and HTTP endpoint."""

from __future__ import annotations

import pytest
from airflow_runs import Run, airflow_db, dagbag, run_dag, slack  # noqa: F401 - fixtures (tests/helpers)


@pytest.fixture
def lake():
    from include.mlops.config import Settings
    from include.mlops.lake import Lake

    return Lake(Settings.from_env().lake_url)


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def curated(airflow_db):
    """Three weeks of February 2013, curated."""
    from include.mlops.config import Settings
    from include.mlops.lake import Lake

    from curation import curate_days

    lake = Lake(Settings.from_env().lake_url)
    curate_days(lake, "2013-02-01", 21)
    return lake
