"""The ML platform as plain Python: nothing here imports Airflow.

Airflow-facing adapters live in ``plugins/mlops_airflow``; DAG files in ``dags/`` only wire them.
"""
