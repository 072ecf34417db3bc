"""The Airflow-facing layer of the platform: ``blocks`` (the Airflow building blocks the DAGs share) and ``tasks``
(one module of task callables per DAG), and ``ui`` (the Model state page).

ML logic lives in ``include.mlops``; this package only adapts it to Airflow (connections, context,
exceptions). Keep imports here cheap: the DAG processor imports this package while parsing.
"""
