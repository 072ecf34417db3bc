"""SQLAlchemy connect args for an embedded SQLite metadata database shared by several local processes (the
demo's driver and a canary's deploy_model): wait up to a minute for a lock instead of failing at once.
Used through ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=mlops_airflow.blocks.sqlite.CONNECT_ARGS``."""

CONNECT_ARGS = {"timeout": 60}
