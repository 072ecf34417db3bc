"""One module per DAG: its task callables, Airflow context in, ``include.mlops`` calls out, Airflow exceptions for
the outcomes. They hold no decision logic (the stages under ``include/mlops`` do)."""
