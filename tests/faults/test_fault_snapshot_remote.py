"""A DVC remote that refuses the training set's snapshot fails the registration: train_model's register task fails
(retried, Slack on the last failure) and no version exists, so no version is ever registered that cannot be
rebuilt; once the remote takes writes, the next run registers its version, with its snapshot."""

from __future__ import annotations

import pytest

from include.mlops.core import registry

CONF = {"end_date": "2013-02-21", "window_days": 21, "min_days": 14, "num_boost_round": 30, "gate_min_auc": 0.5}


@pytest.fixture
def own_model(monkeypatch, request):
    monkeypatch.setenv("MLOPS_MODEL_NAME", "fault_" + request.node.name.removeprefix("test_")[:40])


def test_a_remote_refusing_the_snapshot_registers_nothing(run_dag, curated, slack, own_model, monkeypatch, tmp_path):
    blocked = tmp_path / "remote"
    blocked.write_text("a file where the remote's folder should be")
    monkeypatch.setenv("DVC_REMOTE_URL", str(blocked))
    run = run_dag("train_model", "2013-02-21", conf=CONF)
    assert run.state == "failed" and run.tasks["register"][0] == "failed", run
    assert run.tasks["train"][0] == "success" and run.tasks["evaluation_gate"][0] == "upstream_failed"
    assert registry.versions() == []  # nothing registered: a version without its snapshot never exists
    alerts = [t for t in slack.texts() if "register" in t]
    assert alerts, slack.texts()
    # the remote takes writes again: the same run's training set is registered, with its snapshot
    blocked.unlink()
    again = run_dag("train_model", "2013-02-21", conf=CONF)
    assert again.state == "success", again
    import mlflow

    (v,) = registry.versions()
    assert mlflow.get_run(v["run_id"]).data.tags["data_snapshot"].startswith("md5:")
    assert (blocked / "versions" / "files" / "md5").is_dir()
