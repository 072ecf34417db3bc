"""Where a train_model run's model parameters come from (``tasks.train_model.model_values``): its form, or the
latest tuning study's best, read when the run starts; asked for and missing fails the run for good."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.train import params
from mlops_airflow.blocks import connections
from mlops_airflow.tasks.train_model import model_values


@pytest.fixture
def lake(tmp_path, monkeypatch):
    lake = Lake(tmp_path.as_uri())
    monkeypatch.setattr(connections, "get_lake", lambda: lake)
    return lake


def context(choice: str) -> dict:
    p = params.load()
    return {"params": p["train"] | p["lgbm"] | {"parameters": choice}}


def studied(lake, beats: bool, kind: str = "lightgbm") -> dict:
    result = {
        "study_id": "s9",
        "kind": kind,
        "best": {"params": {"num_leaves": 17, "learning_rate": 0.11}},
        "beats_defaults": beats,
    }
    lake.write_json(result, *layout.tuning_latest())
    return result


def test_the_form_by_default(lake):
    source, values = model_values(context("params.yaml"))
    assert source == "params.yaml" and values == params.load()["lgbm"]


def test_the_latest_study_over_the_form(lake):
    studied(lake, beats=False)
    source, values = model_values(context("latest study"))
    assert source == "study s9" and values == params.load()["lgbm"] | {"num_leaves": 17, "learning_rate": 0.11}


def test_if_better_takes_the_study_only_when_it_beat_the_defaults_by_the_margin(lake):
    assert model_values(context("latest study if better"))[0] == "params.yaml"  # no study yet
    studied(lake, beats=False)
    assert model_values(context("latest study if better"))[0] == "params.yaml"
    studied(lake, beats=True)
    assert model_values(context("latest study if better"))[0] == "study s9"
    studied(lake, beats=True, kind="baseline")  # a study of another kind never applies
    assert model_values(context("latest study if better"))[0] == "params.yaml"


def test_asking_for_a_study_that_does_not_exist_fails_for_good(lake):
    with pytest.raises(AirflowFailException, match="no tuning study has finished yet"):
        model_values(context("latest study"))
    studied(lake, beats=True, kind="baseline")
    with pytest.raises(AirflowFailException, match="searched 'baseline', this run trains 'lightgbm'"):
        model_values(context("latest study"))


@pytest.mark.parametrize(
    "value, expected",
    [(None, None), ("", None), ("  ", None), ("worker1:1,worker2:1", "worker1:1,worker2:1"), (" node1:4 ", "node1:4")],
)
def test_the_deployment_s_horovod_hosts_are_train_model_s_default(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("MLOPS_HOROVOD_HOSTS", raising=False)
    else:
        monkeypatch.setenv("MLOPS_HOROVOD_HOSTS", value)
    assert params.default_hosts() == expected


@pytest.mark.parametrize("value", ["worker1 worker2", "worker1", "worker1:0", "-v:1", "a:1,,b:1", "a:1;rm -rf /"])
def test_a_horovod_host_setting_that_is_no_host_list_is_an_error_naming_it(monkeypatch, value):
    """Read while the DAG files are parsed: the import error names the setting and its value (the form's pattern
    would only say that the param ``hosts`` is invalid, and every scheduled run would be refused)."""
    monkeypatch.setenv("MLOPS_HOROVOD_HOSTS", value)
    with pytest.raises(ValueError, match="MLOPS_HOROVOD_HOSTS .* is not a Horovod host list") as exc:
        params.default_hosts()
    assert repr(value.strip()) in str(exc.value)
