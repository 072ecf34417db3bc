"""A run whose settings are out of their range (``min_labelled: 0``, ``consecutive_days: 0``, ``window_days: -3``,
``workers: 0``...) fails in its first task, naming the setting and the value, for good (no retry can fix its input),
and changes nothing: no alias, no rollout, no lake, no Slack "canary started". The first tasks are called as the
DAGs call them (``mlops_airflow.*``), with the run's params; Airflow's own check of a ``conf`` against the DAGs'
Params, which a REST or CLI trigger meets first, refuses the same values."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def touched(monkeypatch):
    """Every way a first task could change or read state, recorded instead of done: the registry's aliases, the
    lake, the rollout, Slack, the prediction service's scrape, the curated days."""
    from include.mlops.core import registry
    from include.mlops.deploy import canary
    from include.mlops.monitor import service
    from include.mlops.train import pipeline
    from mlops_airflow.blocks import connections, notifiers

    calls: list[str] = []

    def record(name, result=None):
        def call(*args, **kwargs):
            calls.append(name)
            return result

        return call

    monkeypatch.setattr(registry, "alias_version", record("registry.alias_version", {"version": "6"}))
    monkeypatch.setattr(registry, "set_alias", record("registry.set_alias"))
    monkeypatch.setattr(registry, "delete_alias", record("registry.delete_alias"))
    monkeypatch.setattr(connections, "get_lake", record("get_lake", SimpleNamespace()))
    monkeypatch.setattr(notifiers, "notify", record("notify"))
    monkeypatch.setattr(canary, "start", record("canary.start", {"from_date": "2013-02-22"}))
    monkeypatch.setattr(service, "check", record("service.check", {"status": "not configured", "alert": False}))
    for name in ("curated_dates", "training_dates"):  # the curated days should_train counts
        monkeypatch.setattr(pipeline, name, record(f"pipeline.{name}", []), raising=False)
    return calls


def _refused(call, context, message):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException) as err:  # failed for good: retries cannot fix a run's input
        call(context)
    assert message in str(err.value), str(err.value)
    return str(err.value)


DEPLOY = {"version": "7", "action": "canary", "date": "2013-02-21", "wait_hours": 72}


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"min_labelled": 0}, "min_labelled = 0: must be an integer >= 1"),
        ({"min_labelled": -1}, "min_labelled = -1: must be an integer >= 1"),
        ({"min_labelled": 2.5}, "min_labelled = 2.5: must be an integer >= 1"),
        ({"max_labelled": 0}, "max_labelled = 0: must be an integer >= 1"),
        ({"min_labelled": 7000}, "min_labelled = 7000 and max_labelled = 6000"),  # over deploy.yaml's max
        ({"min_labelled": 700, "max_labelled": 600}, "min_labelled = 700 and max_labelled = 600"),
        ({"max_logloss_increase": 2}, "max_logloss_increase = 2: must be a number >= -1 and <= 1"),
        ({"bootstrap": True}, "bootstrap = True: must be an integer"),
        ({"min_labelled": 0, "action": "promote"}, "min_labelled = 0"),  # checked whatever the path
    ],
)
def test_deploy_model_refuses_a_setting_out_of_range_in_plan(touched, conf, message):
    """Kills: plan starting a canary that needs no labelled flight for a verdict (``min_labelled: 0``), or more
    than it ever waits for (then rolled back as inconclusive however good the challenger)."""
    from mlops_airflow.tasks.deploy_model import plan

    text = _refused(plan, {"params": DEPLOY | conf}, message)
    assert "deploy.yaml" in text and "refused before changing anything" in text
    assert touched == []  # not even the registry was asked


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"consecutive_days": 0}, "consecutive_days = 0: must be an integer >= 1 and <= 366"),
        ({"window_days": -3}, "window_days = -3: must be an integer >= 1 and <= 366"),
        ({"cooldown_days": -1}, "cooldown_days = -1: must be an integer >= 0"),
        ({"max_auc_drop": 2}, "max_auc_drop = 2: must be a number >= 0 and <= 1"),
        ({"min_drifted_features": True}, "min_drifted_features = True: must be an integer"),
    ],
)
def test_monitor_model_refuses_a_setting_out_of_range_in_its_first_task(touched, conf, message):
    """Kills: consecutive_days 0 failing later with a false "no monitoring report", window_days -3 in the middle,
    each retried. The drift path (report, which runs whatever service_health did) refuses it too, before the
    registry, and check_thresholds before the lake."""
    from mlops_airflow.tasks import monitor_model

    context = {"params": {"date": "2013-02-10"} | conf}
    text = _refused(monitor_model.service_health, context, message)
    assert "monitoring.yaml" in text
    _refused(monitor_model.report, context, message)
    _refused(monitor_model.check_thresholds, context, message)
    assert touched == []


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"workers": 0}, "workers = 0: must be an integer >= 1 and <= 64"),
        ({"window_days": -3}, "window_days = -3: must be an integer >= 3"),
        ({"learning_rate": 0}, "learning_rate = 0: must be a number > 0 and <= 1"),
        ({"gate_min_auc": 1.5}, "min_auc = 1.5: must be a number >= 0 and <= 1"),
    ],
)
def test_train_model_refuses_a_setting_out_of_range_in_should_train(touched, conf, message):
    from mlops_airflow.tasks.train_model import should_train

    context = {"params": {"reason": "manual", "end_date": None} | conf, "dag_run": SimpleNamespace(run_type="manual")}
    _refused(should_train, context, message)
    assert touched == []


def _dag(name: str):
    spec = importlib.util.spec_from_file_location(f"bounds_{name}", ROOT / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)()  # the @dag function makes the DAG with its Params


@pytest.mark.parametrize(
    "dag_id, conf",
    [
        ("deploy_model", {"version": "7", "min_labelled": 0}),
        ("deploy_model", {"version": "7", "max_labelled": -1}),
        ("deploy_model", {"version": "7", "max_logloss_increase": 5}),
        ("monitor_model", {"consecutive_days": 0}),
        ("monitor_model", {"window_days": -3}),
        ("train_model", {"gate_max_ece": 2}),
    ],
)
def test_a_rest_or_cli_conf_out_of_range_is_refused_when_the_run_is_created(dag_id, conf):
    """What Airflow does with a triggered run's conf before it creates the run (``create_dagrun``: the serialized
    DAG's Params deep-merged with the conf, then validated), and again when each task starts (``process_params``):
    refused, as the form refuses it; the same keys left empty (the file's values) pass."""
    from airflow.sdk.definitions.param import process_params
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    dag = _dag(dag_id)
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    empty = {k: v if k == "version" else None for k, v in conf.items()}
    with pytest.raises(ParamValidationError):
        serialized.params.deep_merge(conf).validate()
    serialized.params.deep_merge(empty).validate()
    with pytest.raises(ParamValidationError):
        process_params(dag, dag.tasks[0], conf, suppress_exception=False)
    process_params(dag, dag.tasks[0], empty, suppress_exception=False)


@pytest.mark.parametrize("task", ["deploy", "train", "monitor"])
def test_a_conf_key_that_is_no_field_of_the_form_is_refused(touched, task):
    """Kills: a setting that no longer exists (``canary_share``, replaced by the ramp) or a misspelt one passed
    through Airflow unchecked and ignored: the run went on with the file's values without a word."""
    from types import SimpleNamespace

    from mlops_airflow.tasks import deploy_model, monitor_model, train_model

    call = {"deploy": deploy_model.plan, "train": train_model.should_train, "monitor": monitor_model.service_health}
    dag = SimpleNamespace(dag_id=f"{task}_dag", params={"version": None, "min_labelled": None})
    context = {
        "params": DEPLOY,
        "dag": dag,
        "dag_run": SimpleNamespace(conf={"version": "7", "canary_share": 0.5, "min_labeled": 10}),
    }
    text = _refused(call[task], context, "['canary_share', 'min_labeled'] are not fields of")
    assert f"{task}_dag's form" in text and "'min_labelled'" in text
    assert touched == []  # nothing asked, nothing changed
