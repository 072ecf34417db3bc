"""The Airflow-facing layer of the platform: lake access through connections, Slack alerts, task callables.

ML logic lives in ``include.mlops``; this package only adapts it to Airflow (connections, context,
exceptions). Keep imports here cheap: the DAG processor imports this package while parsing.
"""
