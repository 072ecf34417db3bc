"""Fault tests: each injects one fault (a registry that raises, a write cut off, an unsafe run id, secrets in a
job's environment, a cleared task, two runs of one date, a client steering the canary) and asserts the safe
outcome. The Airflow fixtures (``run_dag``, ``slack``, ``airflow_db``...) come from ``tests/helpers``."""
