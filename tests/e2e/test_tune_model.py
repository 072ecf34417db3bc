"""tune_model end to end with dag.test(): a small study (2 rounds x 3 trials on a two-week window), its trials
mapped task instances, a planted failing trial failing alone, the result in the lake and MLflow, and the next
train_model run with "latest study" training with exactly the best trial's parameters."""

from __future__ import annotations

import pytest

from include.mlops.core import layout, registry
from include.mlops.train import tune

STUDY = {"trials": 6, "trials_per_round": 3, "rounds": 2, "window_days": 14, "end_date": "2013-02-21"}


@pytest.fixture
def model_name(monkeypatch):
    monkeypatch.setenv("MLOPS_MODEL_NAME", "e2e_tune")
    return "e2e_tune"


def test_a_study_runs_its_trials_as_mapped_tasks_and_train_model_takes_its_best(
    run_dag, curated, slack, model_name, monkeypatch
):
    fit = tune._fit

    def planted(module, train, validation, spec, values, num_boost_round):
        if values.get("num_leaves") == planted.fail_leaves:
            raise RuntimeError("planted failure")
        return fit(module, train, validation, spec, values, num_boost_round)

    planted.fail_leaves = None
    original_ask = tune.ask

    def ask(lake, study_id, r):  # the planted failure hits the second round's middle trial
        asked = original_ask(lake, study_id, r)
        if r == 1 and asked:
            planted.fail_leaves = asked[1]["params"]["num_leaves"]
        return asked

    monkeypatch.setattr(tune, "_fit", planted)
    monkeypatch.setattr(tune, "ask", ask)
    run = run_dag("tune_model", "2013-02-21", conf=STUDY | {"train_after": True, "reason": "decay"})
    assert run.state == "success", run  # the failed trial fails alone; the study goes on

    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as s:
        tis = s.query(TaskInstance).filter_by(dag_id="tune_model", run_id=run.run_id).all()
        mapped = sorted((t.task_id, t.map_index, str(t.state)) for t in tis if t.task_id.startswith("trials_"))
    ran = [m for m in mapped if m[0] in ("trials_0", "trials_1")]
    assert [(t, i) for t, i, _ in ran] == [(f"trials_{r}", i) for r in (0, 1) for i in range(3)], mapped
    assert sorted(st for _, _, st in ran) == ["failed"] + ["success"] * 5, ran
    assert all(st == "skipped" for t, _, st in mapped if t not in ("trials_0", "trials_1")), mapped
    assert run.tasks["tell_1"][0] == "success" and run.tasks["finish"][0] == "success", run
    assert run.tasks["close"][0] == "success", run  # a finished study: nothing to close

    lake = curated
    result = tune.latest(lake)
    assert len(result["trials"]) == 6 and [t["state"] for t in result["trials"]].count("fail") == 1
    assert result["trials"][0]["params"] == result["defaults"]["params"]  # params.yaml's values first
    best = result["best"]
    assert best["value"] == min(t["value"] for t in result["trials"] if t["state"] == "complete")
    assert lake.read_json(layout.tuning(result["study_id"]), tune.RESULT) == result

    import mlflow

    registry.tracking_uri()
    child = mlflow.get_run(best["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == result["run_id"]
    assert {k: child.data.params[k] for k in best["params"]} == {k: str(v) for k, v in best["params"].items()}
    parent = mlflow.get_run(result["run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_validation_logloss"] == best["value"]
    assert registry.versions() == []  # trials register nothing
    assert any("Study" in t and "best validation log-loss" in t for t in slack.texts())

    # "Then train" (how monitoring starts studies): train_model on the study's end date, its best if better
    assert run.tasks["then_train"][0] == "success" and run.tasks["trigger_train_model"][0] == "success", run
    from airflow.models import DagRun

    with create_session() as s:  # the run this study's trigger made (other tests' train_model runs beside it)
        queued = [r.conf for r in s.query(DagRun).filter_by(dag_id="train_model").all()]
    ours = [c for c in queued if c.get("reason") == f"decay; after tuning study {result['study_id']}"]
    expected = {"reason": f"decay; after tuning study {result['study_id']}", "end_date": "2013-02-21"}
    assert ours == [expected | {"parameters": "latest study if better"}], queued

    conf = {"end_date": "2013-02-21", "window_days": 14, "min_days": 14, "num_boost_round": 40}
    trained = run_dag("train_model", "2013-02-21", conf=conf | {"parameters": "latest study", "reason": "tuned"})
    assert trained.state == "success", trained
    version = registry.versions()[-1]
    params = mlflow.get_run(version["run_id"]).data.params
    assert {k: params[k] for k in best["params"]} == {k: str(v) for k, v in best["params"].items()}, params
    assert params["parameters"] == f"study {result['study_id']}"
