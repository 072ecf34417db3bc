"""A registry that cannot answer is never read as "no champion": the service keeps serving what it has and
says so, deploy_model, the gate and monitoring fail (retried, Slack on the last failure) and change nothing."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import httpx
import pytest
from tiny_models import tiny_version

from include.mlops.core import registry


def test_an_unreachable_tracking_server_is_an_error_not_an_absence(unreachable_tracking_server, monkeypatch):
    """Kills: every registry exception turned into None ("no alias", "no versions", "already removed").

    The server answered the client's set-up (the experiment exists) and then went away: each lookup reaches the
    model registry's call, and its error, not the set-up's, is what must come out (its endpoint says so)."""
    import mlflow

    monkeypatch.setattr(mlflow, "get_experiment_by_name", lambda name: SimpleNamespace(name=name, experiment_id="1"))
    monkeypatch.setattr(mlflow, "set_experiment", lambda name: None)
    for lookup in (
        lambda: registry.alias_version("champion"),
        registry.versions,
        lambda: registry.delete_alias("challenger"),
    ):
        with pytest.raises(Exception) as err:
            lookup()
        registry_api = f"{unreachable_tracking_server}/api/2.0/mlflow/(registered-models|model-versions)/"
        assert re.search(registry_api, str(err.value)), err.value
        assert not registry.is_absent(err.value)


def test_absent_is_still_absent(own_registry, tmp_path):
    assert registry.alias_version("champion") is None and registry.versions() == []
    v = tiny_version(tmp_path)
    assert registry.alias_version("champion") is None  # the model exists, the alias does not
    registry.delete_alias("challenger")  # removing an absent alias is fine
    registry.set_alias("champion", v)
    assert registry.alias_version("champion")["version"] == v


def test_the_service_keeps_its_champion_when_the_alias_lookup_fails(own_registry, tmp_path, alias_lookup_fails):
    """Kills: the service dropping its champion on a registry error."""
    from servers import serve

    from include.mlops.core.lake import Lake
    from include.mlops.serve.app import create_app, registry_store

    v = tiny_version(tmp_path)
    registry.set_alias("champion", v)
    lake = Lake((tmp_path / "lake").as_uri())
    flight = {
        "year": 2013,
        "month": 1,
        "day": 2,
        "carrier": "UA",
        "flight": 1545,
        "origin": "EWR",
        "dest": "IAH",
        "sched_dep_time": 515,
        "sched_arr_time": 819,
        "distance": 1400.0,
        "time_hour": "2013-01-02T10:00:00Z",
    }
    with serve(create_app(registry_store(lake), lake, refresh_s=0.2, flush_s=0.2)) as url:
        assert httpx.get(url + "/health").json()["champion"] == v
        alias_lookup_fails()
        deadline = time.time() + 10
        while httpx.get(url + "/health").json()["status"] != "stale" and time.time() < deadline:
            time.sleep(0.1)
        health = httpx.get(url + "/health").json()
        assert health["status"] == "stale" and health["champion"] == v, health
        assert health["refresh"]["ok"] is False and "503" in health["refresh"]["error"]
        r = httpx.post(url + "/predict", json=flight)
        assert r.status_code == 200 and r.json()["predictions"][0]["version"] == v


def test_deploy_model_fails_closed_when_the_alias_lookup_fails(
    run_dag, own_registry, tmp_path, lake, slack, alias_lookup_fails
):
    """Kills: plan promoting a candidate without a canary because "no champion" was read from an error."""
    champion, candidate = tiny_version(tmp_path, seed=1), tiny_version(tmp_path, seed=2)
    registry.set_alias("champion", champion)
    rollout_before = (
        lake.read_bytes("deployments", "rollout.json") if lake.exists("deployments", "rollout.json") else None
    )
    alias_lookup_fails()
    run = run_dag("deploy_model", "2013-02-21", conf={"version": candidate, "date": "2013-02-21"})
    assert run.state == "failed", run
    assert run.tasks["plan"] == ("failed", 3)  # retried twice, then failed
    assert run.tasks["promote_now"][0] != "success" and run.tasks["start_canary"][0] != "success"
    import mlflow

    aliases = mlflow.MlflowClient().get_registered_model(registry.model_name()).aliases  # not the patched lookup
    assert {k: str(v) for k, v in aliases.items()} == {"champion": champion}, aliases  # unchanged, no challenger
    texts = slack.texts()
    assert sum(t.startswith("[RETRY]") for t in texts) == 2, texts
    failures = [t for t in texts if t.startswith("[FAILURE]")]
    assert len(failures) == 1 and "plan" in failures[0] and "503" in failures[0]
    after = lake.read_bytes("deployments", "rollout.json") if lake.exists("deployments", "rollout.json") else None
    assert after == rollout_before  # no rollout started or finished


def test_the_gate_fails_closed_when_the_champion_cannot_be_looked_up(
    curated, own_registry, tmp_path, alias_lookup_fails
):
    """Kills: the gate skipping the champion comparison (first-model rules) on a registry error."""
    from include.mlops.evaluate import gate
    from include.mlops.train import pipeline

    champion = tiny_version(tmp_path)
    registry.set_alias("champion", champion)
    key = "gate-registry-fault"
    pipeline.build_training_set(curated, key, 7, 1, end="2013-02-07")
    pipeline.train(curated, key, 1, num_boost_round=20)
    candidate = pipeline.register(curated, key, params={"num_boost_round": 20}, reason="fault")["version"]
    alias_lookup_fails()
    with pytest.raises(Exception, match="503"):
        gate.run(curated, key, {"min_auc": 0.0, "max_ece": 1.0})
    assert not curated.exists(f"reports/gate/{key}", "decision.json")
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(registry.model_name(), candidate)
    assert "gate" not in (mv.tags or {}) and not mv.aliases  # not judged, not the challenger


def test_monitoring_fails_closed_when_the_champion_cannot_be_looked_up(
    run_dag, curated, own_registry, tmp_path, slack, alias_lookup_fails
):
    """Kills: monitoring skipping the day ("no champion") on a registry error."""
    registry.set_alias("champion", tiny_version(tmp_path))
    alias_lookup_fails()
    run = run_dag("monitor_model", "2013-02-10", conf={"window_days": 7})
    assert run.state == "failed", run
    assert run.tasks["report"] == ("failed", 3) and run.tasks["trigger_train_model"][0] != "success"
    assert not curated.exists("reports/monitoring/date=2013-02-10", "report.json")
    failures = [t for t in slack.texts() if t.startswith("[FAILURE]")]
    assert any("Task report failed" in t for t in failures), failures
    # the daily audit check fails closed too: the registry's champion unknown is never "no change"
    assert run.tasks["audit_check"][0] == "failed" and any("Task audit_check failed" in t for t in failures)
