"""Assets the lifecycle DAGs produce and consume (identity only: cheap to import at parse time)."""

from airflow.sdk import Asset

CURATED_FLIGHTS = Asset(name="curated_flights", uri="lake://curated/flights", group="lake")
CURATED_WEATHER = Asset(name="curated_weather", uri="lake://curated/weather", group="lake")
CURATED = {"flights": CURATED_FLIGHTS, "weather": CURATED_WEATHER}
