"""Assets the lifecycle DAGs produce and consume (identity only: cheap to import at parse time).

The URIs carry no scheme on purpose: a scheme makes Airflow discover every provider's URI normaliser at parse
time (the amazon provider's pulls in boto3). The event's ``extra`` carries the partition's real lake URI.
"""

from airflow.sdk import Asset

CURATED_FLIGHTS = Asset(name="curated_flights", uri="curated_flights", group="lake")
CURATED_WEATHER = Asset(name="curated_weather", uri="curated_weather", group="lake")
CURATED = {"flights": CURATED_FLIGHTS, "weather": CURATED_WEATHER}
