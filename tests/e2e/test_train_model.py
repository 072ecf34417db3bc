"""train_model end to end with dag.test(): real Horovod workers, MLflow tracking and registry.

Each test owns its registry state (its own registered model name, ``MLOPS_MODEL_NAME``, and the versions it
creates itself), so that each passes alone and in any order."""

from __future__ import annotations

import pytest

from include.mlops.core import registry

CONF = {
    "end_date": "2013-02-21",
    "window_days": 21,
    "min_days": 14,
    "num_boost_round": 60,
    "gate_min_auc": 0.55,
    "gate_max_ece": 0.1,
}


@pytest.fixture
def model_name(request, monkeypatch):
    """A registered model of the test's own (no version, no alias until the test makes one)."""
    name = "e2e_" + request.node.name.removeprefix("test_")[:40]
    monkeypatch.setenv("MLOPS_MODEL_NAME", name)
    return name


def fired(lake, date: str, signals: list[str]) -> None:
    """monitor_model's retraining trigger of ``date``, recorded as it records one (``monitor.record_trigger``)."""
    from include.mlops.monitor import monitor

    decision = {"date": date, "signals": signals, "reason": " and ".join(signals), "champion": None, "report": None}
    monitor.record_trigger(lake, decision)


def trained(lake, key: str, shuffle: bool, rounds: int) -> str:
    """A version trained on the 21 days to 2013-02-21 (its labels shuffled: a model that learned nothing)."""
    from include.mlops.core import layout
    from include.mlops.train import pipeline

    pipeline.build_training_set(lake, key, 21, 1, end="2013-02-21")
    if shuffle:
        shard = lake.read_parquet(layout.training(key), "train", "part-00000.parquet")
        shard["label"] = shard["label"].sample(frac=1, random_state=1).to_numpy()
        lake.write_parquet(shard, layout.training(key), "train", "part-00000.parquet")
    pipeline.train(lake, key, 1, num_boost_round=rounds)
    return pipeline.register(lake, key, params={"num_boost_round": rounds}, reason=key)["version"]


def _deploy_runs() -> dict[str, dict]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as s:
        return {r.run_id: dict(r.conf or {}) for r in s.query(DagRun).filter_by(dag_id="deploy_model").all()}


def test_train_model_trains_tracks_registers_and_gates(run_dag, curated, slack, model_name):
    before = registry.versions()
    assert before == [] and registry.alias_version("champion") is None  # a first model
    deploy_before = _deploy_runs()
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
    queued = {k: v for k, v in _deploy_runs().items() if k not in deploy_before}
    assert [str(c.get("version")) for c in queued.values()] == [new["version"]], queued
    # the audit trail: registered and passed, by this run and the user who triggered it
    from include.mlops.core import audit

    trail = audit.history(curated, new["version"])
    assert [r["event"] for r in trail] == ["registered", "gate_passed"], trail
    assert {(r["actor"]["dag_id"], r["actor"]["run_id"], r["actor"]["user"]) for r in trail} == {
        ("train_model", run.run_id, "dag_test")
    }
    assert trail[0]["links"]["run"] == new["run_id"] and trail[1]["links"]["report"].endswith("report.html")
    assert audit.verify(curated)["ok"]


def test_a_candidate_trained_on_shuffled_labels_never_becomes_challenger(curated, model_name):
    """A deliberately bad model goes through register and the gate: aliases stay where they were."""
    from include.mlops.core import layout
    from include.mlops.evaluate import gate
    from include.mlops.train import pipeline

    # the champion: a sound model of this test's own
    pipeline.build_training_set(curated, "sound-labels", 21, 1, end="2013-02-21")
    pipeline.train(curated, "sound-labels", 1, num_boost_round=60)
    current = pipeline.register(curated, "sound-labels", params={"num_boost_round": 60}, reason="champion")["version"]
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


def test_a_version_that_passes_the_gate_during_a_rollout_waits_queued(curated, model_name):
    """One rollout at a time: the gate passes a version while another version's rollout runs; the running
    rollout keeps its challenger, and the decision says which rollout the new version waits behind."""
    from include.mlops.core import layout, rollouts
    from include.mlops.deploy import canary
    from include.mlops.evaluate import gate
    from include.mlops.train import pipeline

    versions = []
    for key in ("queue-first", "queue-second"):
        pipeline.build_training_set(curated, key, 21, 1, end="2013-02-21")
        pipeline.train(curated, key, 1, num_boost_round=30)
        versions.append(pipeline.register(curated, key, params={"num_boost_round": 30}, reason=key)["version"])
    first, second = versions
    registry.set_alias("champion", first)
    registry.set_alias("challenger", first)
    ramp = [{"share": 0.0, "min_hours": 0, "min_requests": 1}, {"share": 1.0, "min_hours": 0, "min_requests": 1}]
    running = dict(canary.start(curated, first, None, ramp, "2013-02-21", owner="rollout-run"))
    try:
        decision = gate.run(curated, "queue-second", {"min_auc": 0.5, "max_ece": 1.0})
        assert decision["passed"] and decision["queued_behind"] == str(first), decision
        assert registry.alias_version("challenger")["version"] == first  # the running rollout's, untouched
        assert rollouts.current(curated) == running
        assert curated.read_json(*layout.gate_latest())["queued_behind"] == str(first)
    finally:
        curated.rm(*layout.rollout())
    decision = gate.run(curated, "queue-second", {"min_auc": 0.5, "max_ece": 1.0})  # no rollout: challenger now
    assert decision["passed"] and "queued_behind" not in decision
    assert registry.alias_version("challenger")["version"] == second


def test_the_way_back_finds_an_earlier_champion_when_a_decay_retrain_fails_the_gate(curated, model_name):
    """A sound model was champion, a worse one replaced it and decayed; monitoring's retraining fails the gate.
    The way back weighs the earlier champions on the failed run's held-out days and chooses the sound one (it
    beats the champion by the gate's margin); a run that drift alone started has no way back."""
    from include.mlops.core import layout
    from include.mlops.deploy import canary
    from include.mlops.evaluate import gate, wayback

    sound, worse = trained(curated, "wb-sound", False, 40), trained(curated, "wb-worse", True, 40)
    failing = trained(curated, "wb-failing", True, 40)
    one = [{"share": 1.0, "min_hours": 0, "min_requests": 0}]
    for version, day in ((sound, "2013-02-01"), (worse, "2013-02-10")):  # both were promoted, the worse one last
        canary.start(curated, version, None, one, day)
        canary.finish(curated, "promoted", {"manual": True})
    registry.set_alias("champion", worse)
    fired(curated, "2013-02-21", ["decay"])
    try:
        assert not gate.run(curated, "wb-failing", {"min_auc": 0.55})["passed"]
        assert wayback.applies(curated, "2013-02-21") and not wayback.applies(curated, "2013-02-20")
        r = wayback.search(curated, "wb-failing", {"min_auc": 0.55})
        assert r["champion"] == worse and r["chosen"] == sound, r
        [earlier] = r["earlier"]  # the champion itself is not weighed
        assert earlier["version"] == sound and earlier["gate_passed"] and earlier["auc_gain"] >= r["margin"], r
        assert curated.read_json(*layout.way_back("wb-failing")) == r
        assert registry.alias_version("champion")["version"] == worse  # nothing promoted: the rollout decides
        # the other way round: the sound model is champion, the worse one earlier: no way back to it
        registry.set_alias("champion", sound)
        r = wayback.search(curated, "wb-failing", {"min_auc": 0.55})
        assert r["chosen"] is None and [e["version"] for e in r["earlier"]] == [worse], r
        # drift alone started it: no way back
        fired(curated, "2013-02-21", ["data_drift"])
        assert not wayback.applies(curated, "2013-02-21")
    finally:
        curated.rm(*layout.triggers())
        curated.rm(*layout.rollout())
        for name in curated.ls(layout.past_rollouts()):
            curated.rm(layout.past_rollouts(), name)
    assert failing not in (sound, worse)


def test_a_decay_retrain_that_fails_the_gate_sends_the_earlier_champion_to_deploy_model(
    run_dag, curated, slack, model_name
):
    """The whole chain under dag.test: monitoring's trigger on a decayed champion (a model trained on shuffled
    labels, promoted after a sound one) starts train_model; upstream has since delivered the training split's days
    with their labels scrambled (a join bug), so the retrained version learns nothing and fails the gate's floor on
    the clean held-out days; way_back weighs the earlier champions on that day and trigger_way_back queues a
    deploy_model canary of the sound version (the shadow and the ramp; nothing is promoted here)."""
    import pandas as pd

    from include.mlops.core import layout
    from include.mlops.deploy import canary

    sound, worse = trained(curated, "chain-sound", False, 60), trained(curated, "chain-worse", True, 60)
    one = [{"share": 1.0, "min_hours": 0, "min_requests": 0}]
    for version, day in ((sound, "2013-02-01"), (worse, "2013-02-10")):
        canary.start(curated, version, None, one, day)
        canary.finish(curated, "promoted", {"manual": True})
    registry.set_alias("champion", worse)
    fired(curated, "2013-02-21", ["decay"])
    scrambled = [layout.curated_file("flights", f"2013-02-{d:02d}") for d in range(1, 16)]  # the training split's
    kept = {where: curated.read_bytes(*where) for where in scrambled}
    days = {where: curated.read_parquet(*where) for where in scrambled}
    labels = pd.concat([d.loc[d["is_labelled"].astype(bool), "label"] for d in days.values()])
    labels = iter(labels.sample(frac=1, random_state=2).to_numpy())  # across the days: no day keeps its delay rate
    for where, day in days.items():
        labelled = day["is_labelled"].astype(bool)
        day.loc[labelled, "label"] = [next(labels) for _ in range(int(labelled.sum()))]
        curated.write_parquet(day, *where)
    deploy_before = _deploy_runs()
    try:
        run = run_dag("train_model", "2013-02-21", conf=CONF | {"reason": "monitoring: decay"})
        assert run.state == "success", run
        run_key = run.run_id.replace(":", "").replace("+", "")
        decision = curated.read_json(f"reports/gate/{run_key}", "decision.json")
        assert not decision["passed"] and "auc_floor" in [c["name"] for c in decision["checks"] if not c["passed"]]
        assert run.tasks["trigger_deploy_model"][0] == "skipped"
        assert run.tasks["way_back"][0] == "success" and run.tasks["trigger_way_back"][0] == "success", run.tasks
        found = curated.read_json(*layout.way_back(run_key))
        assert found["champion"] == worse and found["chosen"] == sound, found
        assert min(found["holdout_days"]) > "2013-02-15", found  # clean days: the earlier versions are fairly weighed
        queued = {k: v for k, v in _deploy_runs().items() if k not in deploy_before}
        [conf] = queued.values()  # the same rollout as any challenger: shadow, ramp, paired comparison
        assert str(conf["version"]) == sound and conf["action"] == "canary" and conf["date"] == found["data_date"]
        assert registry.alias_version("champion")["version"] == worse  # nothing promoted by train_model
        assert any(f"v{sound}" in t and "Way back" in t for t in slack.texts()), slack.texts()
    finally:
        for where, data in kept.items():
            curated.write_bytes(data, *where)
        curated.rm(*layout.triggers())
        curated.rm(*layout.rollout())
        for name in curated.ls(layout.past_rollouts()):
            curated.rm(layout.past_rollouts(), name)


def test_a_failed_job_registers_nothing_and_alerts(run_dag, curated, slack, model_name):
    before = registry.versions()
    run = run_dag("train_model", "2013-02-21", conf=CONF | {"hosts": "no-such-host.invalid:2", "timeout_minutes": 1})
    assert run.state == "failed", run
    assert run.tasks["train"] == ("failed", 1) and run.tasks["register"][0] == "upstream_failed"
    assert registry.versions() == before
    # one [FAILURE] message, through the real HTTP stand-in: what failed, where, and why
    [alert] = [p for p in slack.payloads if p["text"].startswith("[FAILURE]")]
    text = alert["text"]
    assert text.startswith("[FAILURE] Task train failed\nDAG `train_model`, task `train` (try 1), date 2013-02-21")
    assert "AirflowFailException: Horovod job with 2 worker(s) failed" in text, text
    assert "http://localhost:8080/dags/train_model/runs/" in text
    assert alert["blocks"][0]["text"]["text"].startswith(":red_circle: *Task train failed*")
    assert not [t for t in slack.texts() if t.startswith("[RETRY]")]  # a failed job is not retried


def test_too_few_curated_days_skips_training(run_dag, curated, model_name):
    before = registry.versions()
    run = run_dag("train_model", "2013-02-21", conf=CONF | {"min_days": 60})
    assert run.state == "success", run
    assert run.tasks["build_training_set"][0] == "skipped" and run.tasks["train"][0] == "skipped"
    assert registry.versions() == before
