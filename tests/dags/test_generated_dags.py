"""The ingestion DAGs come from the declaration (``dags/ingest.py``): one per data set, or per group of data sets
declared ``ingest_with`` another; a settings folder of another data set gets its own DAG and no flights."""

from pathlib import Path

import pytest
import yaml

from include.mlops.core import schema
from include.mlops.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / "ingest.py"))


def test_the_project_declaration_gives_ingest_flights_with_the_weather():
    assert schema.ingestion_groups() == {"flights": ["weather", "flights"]}
    bag = _bag()
    assert not bag.import_errors
    assert set(bag.dag_ids) == {"ingest_flights"}
    tasks = set(bag.dags["ingest_flights"].task_ids)
    assert {"check_window", "weather.curate", "flights.curate", "flights.announce_quarantine"} <= tasks


def test_a_settings_folder_of_another_data_set_gets_its_own_dag(monkeypatch):
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(ROOT / "examples" / "pizza"))
    monkeypatch.delenv("MLOPS_DATASETS", raising=False)
    bag = _bag()
    assert not bag.import_errors
    assert set(bag.dag_ids) == {"ingest_pizzas"}
    dag = bag.dags["ingest_pizzas"]
    assert {t for t in dag.task_ids if t != "check_window"} == {
        "pizzas.wait_for_drop",
        "pizzas.extract",
        "pizzas.validate",
        "pizzas.curate",
        "pizzas.announce_quarantine",
    }
    assert "`pizzas`" in dag.doc_md and "ingest_pizzas" in dag.doc_md


@pytest.mark.parametrize("target", ["nowhere", "second", "third"])
def test_ingest_with_names_another_data_set_ingested_by_its_own_dag(tmp_path, target):
    one = {"columns": {"k": "int"}, "key": ["k"]}
    declared = {
        "first": one | {"ingest_with": "third"},
        "second": one | {"ingest_with": target},
        "third": one,
    }
    f = tmp_path / "datasets.yaml"
    f.write_text(yaml.safe_dump({"datasets": declared}))
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_DATASETS": str(f)})
    if target == "third":  # two data sets ingested with a third: one DAG of three
        assert schema.ingestion_groups(settings) == {"third": ["first", "second", "third"]}
        return
    with pytest.raises(ValueError, match=f"dataset 'second': ingest_with names '{target}'"):
        schema.ingestion_groups(settings)


def test_the_model_dags_take_their_ids_from_the_declaration(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    def ids():
        return {
            d
            for f in ("train_model.py", "deploy_model.py", "monitor_model.py", "tune_model.py")
            for d in DagBag(dag_folder=str(ROOT / "dags" / f)).dags
        }

    assert ids() == {"train_model", "deploy_model", "monitor_model", "tune_model"}  # the flights model's names
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(ROOT / "examples" / "pizza"))
    monkeypatch.delenv("MLOPS_DATASETS", raising=False)
    assert ids() == {"train_large_pizza", "deploy_large_pizza", "monitor_large_pizza", "tune_large_pizza"}
    train = DagBag(dag_folder=str(ROOT / "dags" / "train_model.py")).dags["train_large_pizza"]
    assert train.get_task("trigger_deploy_model").trigger_dag_id == "deploy_large_pizza"
    # a failed gate: the way back, and its version to the same deployment DAG (the ramp)
    assert train.get_task("trigger_way_back").trigger_dag_id == "deploy_large_pizza"
    assert train.get_task("way_back").upstream_task_ids == {"gate_failed"}
    assert train.get_task("gate_failed").upstream_task_ids == {"evaluation_gate"}
    assert train.get_task("trigger_way_back").conf["action"] == "canary"
    monitor = DagBag(dag_folder=str(ROOT / "dags" / "monitor_model.py")).dags["monitor_large_pizza"]
    assert monitor.get_task("trigger_train_model").trigger_dag_id == "train_large_pizza"
    # retraining that failed the gate twice: the model's own tuning study, which then trains the model's own DAG
    assert monitor.get_task("trigger_tune_model").trigger_dag_id == "tune_large_pizza"
    assert monitor.get_task("remedy").downstream_task_ids == {"trigger_train_model", "trigger_tune_model"}
    tune = DagBag(dag_folder=str(ROOT / "dags" / "tune_model.py")).dags["tune_large_pizza"]
    assert tune.get_task("trigger_train_model").trigger_dag_id == "train_large_pizza"
    assert train.params["kind"] == "lightgbm" and "l2" in train.params  # every kind's parameters in the form


@pytest.mark.parametrize(
    "dags, message",
    [({"train": "has space"}, "are not DAG ids"), ({"serve": "x"}, "a mapping of"), ("train_x", "a mapping of")],
)
def test_a_wrong_dags_declaration_is_refused(tmp_path, dags, message):
    one = {"columns": {"k": "int", "y": "bool"}, "key": ["k"]}
    f = tmp_path / "datasets.yaml"
    model = {"name": "m", "dataset": "d", "label": "y", "dags": dags}
    f.write_text(yaml.safe_dump({"datasets": {"d": one}, "models": [model]}))
    with pytest.raises(ValueError, match=message):
        schema.declaration(Settings.from_env({"MLOPS_HOME": str(tmp_path), "MLOPS_DATASETS": str(f)}))


def test_no_tuning_dag_without_a_tune_section(tmp_path, monkeypatch):
    """A model whose params.yaml has no tune: section has no study to run: no tune DAG (and no import error);
    monitoring then always retrains (``monitor.remedy``'s ``tunable``)."""
    from airflow.dag_processing.dagbag import DagBag

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["tune"]
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(params))
    monkeypatch.setenv("MLOPS_PARAMS", str(f))
    bag = DagBag(dag_folder=str(ROOT / "dags" / "tune_model.py"))
    assert bag.dags == {} and bag.import_errors == {}
    monkeypatch.delenv("MLOPS_PARAMS")
    assert set(DagBag(dag_folder=str(ROOT / "dags" / "tune_model.py")).dags) == {"tune_model"}
