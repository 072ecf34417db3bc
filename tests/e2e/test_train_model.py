"""train_model end to end with dag.test(): real Horovod workers, MLflow tracking and registry."""

from __future__ import annotations


from include.mlops.core import registry

CONF = {"end_date": "2013-02-21", "window_days": 21, "min_days": 14, "num_boost_round": 60,
        "gate_min_auc": 0.55, "gate_max_ece": 0.1}


def test_train_model_trains_tracks_registers_and_gates(run_dag, curated, slack):
    before = registry.versions()
    run = run_dag("train_model", "2013-02-21", conf=CONF | {"reason": "e2e test"})
    assert run.state == "success", run
    assert run.tasks["train"] == ("success", 1)
    after = registry.versions()
    assert len(after) == len(before) + 1
    new = after[-1]
    import mlflow

    r = mlflow.get_run(new["run_id"])
    assert r.data.params["workers"] == "2" and r.data.params["window_days"] == "21"
    assert r.data.tags["reason"] == "e2e test" and r.data.tags["data_window"] == "2013-02-01..2013-02-21"
    assert len(r.data.tags["data_fingerprint"]) == 64 and r.data.tags["code_version"]
    for m in ("validation_auc", "test_auc", "test_logloss", "test_brier", "test_ece", "train_s", "wall_s"):
        assert m in r.data.metrics, m
    assert 0.55 < r.data.metrics["test_auc"] < 0.95
    import os
    from pathlib import Path

    assert r.info.artifact_uri.startswith(Path(os.environ["MLOPS_HOME"]).resolve().as_uri())  # not ./mlruns
    run_key = run.run_id.replace(":", "").replace("+", "")
    assert curated.exists(f"training/{run_key}", "model.txt")
    assert curated.read_json(f"training/{run_key}", "registered.json")["version"] == new["version"]

    # the evaluation gate: the first model passes on the floor alone and becomes the challenger
    assert run.tasks["evaluation_gate"] == ("success", 1)
    decision = curated.read_json(f"reports/gate/{run_key}", "decision.json")
    assert decision["passed"] and decision["champion_version"] is None
    assert [c["name"] for c in decision["checks"]] == ["auc_floor", "calibration"]
    html = curated.read_bytes(f"reports/gate/{run_key}", "report.html").decode()
    assert "Gate PASSED" in html and html.count("data:image/png;base64,") == 3 and "origin" in html
    assert registry.alias_version("challenger")["version"] == new["version"]
    assert registry.alias_version("champion") is None
    assert mlflow.get_run(new["run_id"]).data.metrics["gate_passed"] == 1.0
    gate_msgs = [t for t in slack.texts() if t.startswith("[GATE]")]
    assert len(gate_msgs) == 1 and f"Model v{new['version']} passed" in gate_msgs[0]
    assert "report.html" in gate_msgs[0]
    # the gate passed: deploy_model is triggered with the version (dag.test queues that run, it does not run it)
    assert run.tasks["trigger_deploy_model"][0] == "success"
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as s:
        queued = s.query(DagRun).filter_by(dag_id="deploy_model").all()
        assert any(str((r.conf or {}).get("version")) == new["version"] for r in queued), [(r.run_id, r.conf, r.state) for r in queued]


def test_a_candidate_trained_on_shuffled_labels_never_becomes_challenger(curated):
    """A deliberately bad model goes through register and the gate: aliases stay where they were."""
    from include.mlops.core import layout
    from include.mlops.evaluate import gate
    from include.mlops.train import pipeline

    current = registry.versions()[-1]["version"]
    registry.set_alias("champion", current)
    registry.set_alias("challenger", current)
    key = "shuffled-labels"
    pipeline.build_training_set(curated, key, 21, 2, end="2013-02-21")
    folder = layout.training(key)
    for i in range(2):  # destroy the signal in the training shards only
        shard = curated.read_parquet(folder, "train", f"part-{i:05d}.parquet")
        shard["label"] = shard["label"].sample(frac=1, random_state=i).to_numpy()
        curated.write_parquet(shard, folder, "train", f"part-{i:05d}.parquet")
    pipeline.train(curated, key, 2, num_boost_round=60)
    reg = pipeline.register(curated, key, params={"num_boost_round": 60}, reason="shuffled labels")
    decision = gate.run(curated, key, {"min_auc": 0.55, "max_ece": 0.1})
    assert not decision["passed"]
    assert {"auc_floor", "auc_vs_champion"} <= set(decision["failed"])
    assert registry.alias_version("champion")["version"] == current
    assert registry.alias_version("challenger")["version"] == current
    assert reg["version"] != current


def test_a_failed_job_registers_nothing(run_dag, curated):
    before = registry.versions()
    run = run_dag("train_model", "2013-02-21", conf=CONF | {"hosts": "no-such-host.invalid:2",
                                                           "timeout_minutes": 1})
    assert run.state == "failed", run
    assert run.tasks["train"][0] == "failed" and run.tasks["register"][0] == "upstream_failed"
    assert registry.versions() == before


def test_too_few_curated_days_skips_training(run_dag, curated):
    before = registry.versions()
    run = run_dag("train_model", "2013-02-21", conf=CONF | {"min_days": 60})
    assert run.state == "success", run
    assert run.tasks["build_training_set"][0] == "skipped" and run.tasks["train"][0] == "skipped"
    assert registry.versions() == before
