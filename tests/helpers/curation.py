"""Curated days of every declared data set (flights and weather, or a settings folder's), through the ingestion
DAG's own steps (run directly, for speed)."""

import datetime as dt

from include.mlops.core import layout
from include.mlops.core.config import Settings
from include.mlops.core.lake import Lake
from include.mlops.core.schema import dataset, ingestion_groups
from include.mlops.ingest import ingestion
from include.mlops.simulate.upstream import Upstream


def curate_days(lake: Lake, start: str, days: int) -> None:
    up, settings = Upstream(lake), Settings.from_env()
    d0 = dt.date.fromisoformat(start)
    for i in range(days):
        d = d0 + dt.timedelta(days=i)
        for name in _declared():
            up.publish(d, name)
            b = ingestion.batch(dataset(name), d)
            ingestion.extract(lake, b)
            ingestion.check(lake, b, settings)
            ingestion.curate(lake, b)


def write_curated(lake: Lake, dates: list[str]) -> None:
    """The curated partitions of those days straight from the simulator's tables (transform + write, no GX
    validation: every day of 2013 passes the suites, see tests/unit/test_validation.py). For fast tests."""
    from include.mlops.simulate.upstream import day_table

    for d in dates:
        date = dt.date.fromisoformat(d)
        for name in _declared():
            df = ingestion.transform(day_table(name, date), dataset(name), date)
            lake.write_parquet(df, *layout.curated_file(name, date))


def _declared() -> list[str]:
    """The declared data sets, in the order their ingestion DAGs take them (the weather before the flights)."""
    return [name for group in ingestion_groups().values() for name in group]
