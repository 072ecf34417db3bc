"""Assets the lifecycle DAGs produce and consume (identity only: cheap to import at parse time). Each data set
ingestion knows has a ``curated_<dataset>`` Asset (a partition curated) and a ``quarantined_<dataset>`` one (a
drop rejected); the event's ``extra`` carries the date, row count and the partition's real lake URI.

The URIs carry no scheme on purpose: a scheme makes Airflow discover every provider's URI normaliser at parse
time (the amazon provider's pulls in boto3).
"""

from airflow.sdk import Asset


def curated(dataset: str) -> Asset:
    return Asset(name=f"curated_{dataset}", uri=f"curated_{dataset}", group="lake")


def quarantined(dataset: str) -> Asset:
    return Asset(name=f"quarantined_{dataset}", uri=f"quarantined_{dataset}", group="lake")


CURATED_FLIGHTS = curated("flights")
CURATED_WEATHER = curated("weather")
QUARANTINED_FLIGHTS = quarantined("flights")
