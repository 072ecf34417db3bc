"""Airflow building blocks the DAGs share: assets, connections (the lake), defaults (default_args, dates, the
run's key), forms (Params from the YAML files), notifiers (Slack), operators (the Horovod job), sensors and
triggers (waiting deferred), the SQLite connect arguments. They never import a DAG's task module (``tasks``)."""
