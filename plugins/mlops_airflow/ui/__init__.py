"""The model-state page of the Airflow UI (registered by ``plugins/mlops_ui.py``)."""
