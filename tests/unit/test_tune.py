"""Tuning's ask/tell (``include.mlops.train.tune``): a study rebuilt from the lake each round proposes what one
Optuna study asked and told in the same order in one process with the same seed does; the search space is
checked against the kind's declared parameters; a trial with no result is a failed trial and the study goes on."""

from __future__ import annotations

import datetime as dt
import math

import optuna
import pytest

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.train import params, tune

SPACE = {
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "num_leaves": {"low": 15, "high": 255, "log": True},
    "feature_fraction": {"low": 0.5, "high": 1.0},
    "min_data_in_leaf": {"choices": [10, 50, 200]},
}


def objective(p: dict) -> float:
    return (math.log(p["learning_rate"]) + 3) ** 2 + p["num_leaves"] / 300 + abs(p["feature_fraction"] - 0.8)


def study_in(lake: Lake, study_id: str, trials: int, per_round: int, rounds: int, seed: int = 7) -> dict:
    tuning = params.load()["tune"] | {"space": SPACE, "trials": trials, "trials_per_round": per_round, "seed": seed}
    settings = {
        "study_id": study_id,
        "kind": "lightgbm",
        "training_set": "t",
        "tune": tuning,
        "rounds": rounds,
        "defaults": tune.defaults("lightgbm", tune.space({"space": SPACE}, "lightgbm")),
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "run_id": "r",
    }
    lake.write_json(settings, layout.tuning(study_id), tune.STUDY)
    return settings


FAILS = {4}  # a planted failing trial: it leaves no result, and tell records its failure


def test_rounds_rebuilt_from_the_lake_propose_what_one_study_in_process_does(tmp_path):
    lake = Lake(tmp_path.as_uri())
    settings = study_in(lake, "s1", trials=11, per_round=3, rounds=6)
    proposed = []
    for r in range(6):
        asked = tune.ask(lake, "s1", r)
        assert tune.ask(lake, "s1", r) == asked  # a retried ask returns the recorded round
        for p in asked:
            if p["number"] not in FAILS:
                tune.record_trial(lake, "s1", p, objective(p["params"]))
        summary = tune.tell(lake, "s1", r)
        assert summary["failed"] == sum(p["number"] in FAILS for p in asked)
        proposed += [p["params"] for p in asked]
    assert len(proposed) == 11  # the budget: 3 + 3 + 3 + 2, then nothing

    # the same study, in one process: same seed, same start-up, the defaults enqueued first
    dists = tune.space(settings["tune"], "lightgbm")
    reference = optuna.create_study(direction="minimize", sampler=tune.sampler(7, 3))
    reference.enqueue_trial(settings["defaults"])
    expected = []
    while len(expected) < 11:
        batch = [reference.ask(dists) for _ in range(min(3, 11 - len(expected)))]
        for t in batch:
            if t.number in FAILS:
                reference.tell(t, state=optuna.trial.TrialState.FAIL)
            else:
                reference.tell(t, objective(t.params))
        expected += [t.params for t in batch]
    assert proposed == expected
    assert proposed[0] == settings["defaults"]  # params.yaml's values first
    assert all(p not in proposed[:i] for i, p in enumerate(proposed)) and len(proposed[4:]) == 7  # TPE after round 1
    best = tune.best_trial(tune.recorded_trials(lake, "s1"))
    assert best["value"] == min(objective(p) for i, p in enumerate(proposed) if i not in FAILS)


def test_another_seed_proposes_other_trials(tmp_path):
    lake = Lake(tmp_path.as_uri())
    study_in(lake, "a", trials=3, per_round=3, rounds=1, seed=1)
    study_in(lake, "b", trials=3, per_round=3, rounds=1, seed=2)
    a, b = tune.ask(lake, "a", 0), tune.ask(lake, "b", 0)
    assert a[0]["params"] == b[0]["params"] and a[1:] != b[1:]  # the defaults, then the seed's own proposals


def test_the_budget_of_minutes_ends_the_study(tmp_path):
    lake = Lake(tmp_path.as_uri())
    settings = study_in(lake, "m", trials=10, per_round=2, rounds=5)
    settings["started_at"] = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    lake.write_json(settings, layout.tuning("m"), tune.STUDY)
    assert tune.ask(lake, "m", 0) == [] and tune.ask(lake, "m", 1) == []  # and every later round


def test_a_round_is_never_asked_before_the_one_before_it(tmp_path):
    lake = Lake(tmp_path.as_uri())
    study_in(lake, "o", trials=6, per_round=2, rounds=3)
    with pytest.raises(tune.StudyError, match="round 1 asked before round 0"):
        tune.ask(lake, "o", 1)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"max_depth": {"low": 1, "high": 3}}, "has no parameter 'max_depth'"),
        ({"num_leaves": {"low": 1, "high": 300}}, "num_leaves"),  # below the declared minimum 2
        ({"learning_rate": {"low": 0.3, "high": 0.01}}, "low < high"),
        ({"lambda_l2": {"low": 0, "high": 1, "log": True}}, "low > 0 on a log scale"),
        ({"feature_fraction": {"choices": []}}, "choices is empty"),
        ({"feature_fraction": [0.5, 1.0]}, "give {low, high}"),
    ],
)
def test_a_bad_search_space_is_refused_naming_the_parameter(entry, message):
    with pytest.raises(tune.StudyError, match=message):
        tune.space({"space": entry}, "lightgbm")


def test_the_shipped_space_is_valid_and_typed():
    from optuna.distributions import FloatDistribution, IntDistribution

    dists = tune.space(params.load()["tune"], "lightgbm")
    assert isinstance(dists["num_leaves"], IntDistribution) and dists["num_leaves"].log
    assert isinstance(dists["learning_rate"], FloatDistribution)


def test_the_tell_of_a_round_whose_trials_all_failed_goes_on(tmp_path):
    lake = Lake(tmp_path.as_uri())
    study_in(lake, "f", trials=4, per_round=2, rounds=2)
    tune.ask(lake, "f", 0)
    assert tune.tell(lake, "f", 0) | {"best": None} == {
        "round": 0,
        "asked": 2,
        "complete": 0,
        "failed": 2,
        "best": None,
    }
    assert len(tune.ask(lake, "f", 1)) == 2  # the study goes on
    assert tune.best_trial(tune.recorded_trials(lake, "f")) is None  # finish then refuses: nothing to take


def test_defaults_outside_the_space_are_refused_by_name():
    narrow = {"num_leaves": {"low": 2, "high": 10}, "learning_rate": {"low": 0.01, "high": 0.3}}
    with pytest.raises(tune.StudyError, match=r"lgbm.num_leaves = 63 lies outside tune.space.num_leaves"):
        tune.defaults("lightgbm", tune.space({"space": narrow}, "lightgbm"))


def test_a_study_over_without_a_result_has_its_mlflow_run_ended_failed(tmp_path, monkeypatch):
    """``close`` (tune_model's all_done task): a started study with no result ends its MLflow run as FAILED; one
    that finished, or never started, is left alone; a retry of close after it is harmless."""
    import mlflow

    from include.mlops.core import registry

    monkeypatch.setenv("MLOPS_MODEL_NAME", "unit_tune_close")
    lake = Lake(tmp_path.as_uri())
    assert tune.close(lake, "never-started") is None
    settings = tune.start(lake, "s-open", "lightgbm", "s-open", params.load()["tune"], 2, 10)
    registry.tracking_uri()
    assert mlflow.get_run(settings["run_id"]).info.status == "RUNNING"
    assert tune.close(lake, "s-open") == settings["run_id"]
    assert mlflow.get_run(settings["run_id"]).info.status == "FAILED"
    assert tune.close(lake, "s-open") == settings["run_id"]  # a retry: the same end
    done = tune.start(lake, "s-done", "lightgbm", "s-done", params.load()["tune"], 2, 10)
    lake.write_json({"study_id": "s-done"}, layout.tuning("s-done"), tune.RESULT)  # finish ended its run
    registry.end_run(done["run_id"])
    assert tune.close(lake, "s-done") is None
    assert mlflow.get_run(done["run_id"]).info.status == "FINISHED"
