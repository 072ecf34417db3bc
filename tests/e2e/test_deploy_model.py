"""deploy_model end to end: a real prediction service, traffic replayed over HTTP, outcomes from ingestion,
then promotion or rollback decided on the canary's evidence (dag.test())."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from include.mlops import deployment, registry
from include.mlops.sources.traffic import replay
from include.mlops.training import pipeline

from curation import curate_days


@pytest.fixture(scope="module")
def versions(curated):
    """A model registry of its own: a good version and one trained on shuffled labels, same window."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLOPS_MODEL_NAME", "deploy_test")
    out = {}
    for name, rounds, shuffle in (("bad", 60, True), ("good", 60, False)):
        key = f"deploy-{name}"
        pipeline.build_training_set(curated, key, 21, 1, end="2013-02-21")
        if shuffle:
            shard = curated.read_parquet(f"training/{key}", "train", "part-00000.parquet")
            shard["label"] = shard["label"].sample(frac=1, random_state=0).to_numpy()
            curated.write_parquet(shard, f"training/{key}", "train", "part-00000.parquet")
        pipeline.train(curated, key, 1, num_boost_round=rounds)
        out[name] = pipeline.register(curated, key, params={"num_boost_round": rounds}, reason=f"deploy {name}")["version"]
    yield out
    mp.undo()


@pytest.fixture(scope="module")
def service(versions, curated):
    from servers import serve

    from include.mlops.serving.app import create_app, registry_store

    with serve(create_app(registry_store(curated), curated, refresh_s=0.3, flush_rows=200,
                          flush_s=0.3)) as url:
        yield url


def canary_traffic(lake, url, version, days):
    """What production does while the canary runs: flights are predicted, later their outcomes are ingested."""
    def run():
        deadline = time.time() + 120
        while time.time() < deadline:
            r = deployment.current(lake)
            h = httpx.get(url + "/health").json()
            if r and r["status"] == "canary" and str(r["version"]) == version and h["challenger"] == version \
                    and h["canary_share"] > 0:
                break
            time.sleep(0.3)
        for d in days:
            res = replay(d, url, concurrency=4)
            assert res.errors == 0, res
        time.sleep(1.5)  # let the service flush its prediction log
        curate_days(lake, days[0], len(days))

    t = threading.Thread(target=run)
    t.start()
    return t


CONF = {"canary_share": 0.5, "min_labelled_per_arm": 400, "max_logloss_increase": 0.0}


def test_first_version_is_promoted_directly(run_dag, versions, slack):
    run = run_dag("deploy_model", "2013-02-22", conf={"version": versions["bad"]})
    assert run.state == "success", run
    assert run.tasks["promote_now"][0] == "success" and run.tasks["start_canary"][0] == "skipped"
    assert registry.alias_version("champion")["version"] == versions["bad"]
    assert any("promoted to champion" in t for t in slack.texts())


def test_a_better_challenger_is_promoted_on_evidence(run_dag, versions, service, curated, slack):
    traffic = canary_traffic(curated, service, versions["good"], ["2013-02-22", "2013-02-23"])
    run = run_dag("deploy_model", "2013-02-23", conf=CONF | {"version": versions["good"]})
    traffic.join()
    assert run.state == "success", run
    assert run.tasks["decide"][0] == "success"
    assert registry.alias_version("champion")["version"] == versions["good"]
    assert registry.alias_version("challenger") is None
    evidence = curated.read_json("reports", "deployments", f"v{versions['good']}.json")
    assert evidence["decision"] == "promote" and evidence["flights"] >= 800
    assert evidence["logloss"]["ci95"][1] <= 0.0 and evidence["logloss"]["challenger"] < evidence["logloss"]["champion"]
    assert set(evidence["live_auc_by_arm"]) == {"champion", "challenger"}
    msg = next(t for t in slack.texts() if "promoted to champion" in t and f"v{versions['good']}" in t)
    assert "log-loss challenger" in msg and "95 % CI" in msg
    expected = {"champion": versions["good"], "challenger": None, "canary_share": 0.0}
    deadline = time.time() + 10  # the service follows the aliases and the rollout without a restart
    while httpx.get(service + "/versions").json() != expected and time.time() < deadline:
        time.sleep(0.2)
    assert httpx.get(service + "/versions").json() == expected


def test_a_worse_challenger_is_rolled_back(run_dag, versions, service, curated, slack):
    traffic = canary_traffic(curated, service, versions["bad"], ["2013-02-24", "2013-02-25"])
    run = run_dag("deploy_model", "2013-02-25", conf=CONF | {"version": versions["bad"]})
    traffic.join()
    assert run.state == "success", run
    assert registry.alias_version("champion")["version"] == versions["good"]
    assert registry.alias_version("challenger") is None
    assert deployment.current(curated)["status"] == "rolled_back"
    evidence = curated.read_json("reports", "deployments", f"v{versions['bad']}.json")
    assert evidence["decision"] == "rollback" and evidence["logloss"]["ci95"][0] > 0
    assert any(f"Model v{versions['bad']} rolled back" in t for t in slack.texts())


def test_manual_rollback_of_the_champion_is_refused(run_dag, versions):
    run = run_dag("deploy_model", "2013-02-26", conf={"version": versions["good"], "action": "rollback"})
    assert run.state == "failed" and run.tasks["rollback_now"][0] == "failed"
    assert registry.alias_version("champion")["version"] == versions["good"]
