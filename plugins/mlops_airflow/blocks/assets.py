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


def training_inputs() -> list[Asset]:
    """What starts a training run of the model: a curated partition of the data set it scores (its declaration,
    ``include/config/datasets.yaml``: ``curated_flights``)."""
    from include.mlops.core.schema import model

    return [curated(model().dataset)]


def monitoring_inputs():
    """What starts the model's monitoring: a day of each of its declared inputs curated (the scored data set and
    every joined one: ``curated_flights & curated_weather``), or the scored data set's drop quarantined (the day is
    reported all the same)."""
    from include.mlops.core.schema import model

    m = model()
    both = curated(m.dataset)
    for j in m.joins:
        both = both & curated(j.dataset)
    return both | quarantined(m.dataset)


def model_dags() -> dict[str, str]:
    """The model's DAG ids by role (``train``, ``deploy``, ``monitor``), from its declaration: the flights model
    keeps ``train_model``, ``deploy_model`` and ``monitor_model``; another model's default is ``train_<name>``..."""
    from include.mlops.core.schema import model

    return dict(model().dags)
