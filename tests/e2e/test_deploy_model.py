"""deploy_model end to end: a real prediction service, traffic replayed over HTTP, outcomes from ingestion,
then promotion or rollback decided on the canary's evidence (dag.test())."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from curation import curate_days

from include.mlops.core import layout, registry, rollouts
from include.mlops.simulate.traffic import replay
from include.mlops.train import pipeline

# the service runs as in production: /predict requires a bearer token (at least 32 characters)
SERVE_TOKEN = "e2e-serve-token-0123456789abcdefghij"


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
        out[name] = pipeline.register(curated, key, params={"num_boost_round": rounds}, reason=f"deploy {name}")[
            "version"
        ]
    yield out
    mp.undo()


@pytest.fixture(scope="module")
def service(versions, curated):
    from servers import serve

    from include.mlops.serve.app import create_app, registry_store

    with serve(
        create_app(registry_store(curated), curated, refresh_s=0.3, flush_rows=200, flush_s=0.3, token=SERVE_TOKEN)
    ) as url:  # as in production: /predict needs the token
        yield url


class CanaryTraffic(threading.Thread):
    """What production does while the canary runs: once the canary is live (rollout written, the service routing
    to the challenger), the days' flights are predicted over HTTP, later their outcomes are ingested. Nothing is
    asserted in this thread: ``check()`` raises in the test's own thread what went wrong here."""

    def __init__(self, lake, url, version, days):
        super().__init__(daemon=True)
        self.lake, self.url, self.version, self.days = lake, url, version, days
        self.error: str | None = None
        self.replayed: list = []

    def run(self):
        try:
            deadline = time.time() + 120
            while True:
                r = rollouts.current(self.lake)
                h = httpx.get(self.url + "/health").json()
                if (
                    r
                    and r["status"] == "canary"
                    and str(r["version"]) == self.version
                    and h["challenger"] == self.version
                    and h["canary_share"] > 0
                ):
                    break
                if time.time() > deadline:
                    self.error = f"the canary of v{self.version} never went live: rollout {r}, service {h}"
                    return
                time.sleep(0.3)
            for d in self.days:
                self.replayed.append(replay(d, self.url, concurrency=4, token=SERVE_TOKEN))
            time.sleep(1.5)  # let the service flush its prediction log
            curate_days(self.lake, self.days[0], len(self.days))
        except Exception as exc:  # noqa: BLE001 - reported to the test by check()
            self.error = f"{type(exc).__name__}: {exc}"

    def check(self):
        self.join(180)
        assert not self.is_alive(), "the traffic thread did not finish"
        assert self.error is None, self.error
        assert self.replayed and all(r.errors == 0 for r in self.replayed), self.replayed


def canary_traffic(lake, url, version, days) -> CanaryTraffic:
    t = CanaryTraffic(lake, url, version, days)
    t.start()
    return t


# the canary's flights are those of the days after the data date the run was started for
CONF = {"canary_share": 0.5, "min_labelled_per_arm": 400, "max_logloss_increase": 0.0}


def given(lake, champion: str | None) -> None:
    """Each test starts from its own state (any order, alone or together): this champion, no challenger, no
    rollout running."""
    registry.delete_alias("challenger")
    if champion is None:
        registry.delete_alias("champion")
    else:
        registry.set_alias("champion", champion)
    lake.rm(*layout.rollout())


def test_first_version_is_promoted_directly(run_dag, versions, curated, slack):
    given(curated, None)
    run = run_dag("deploy_model", "2013-02-22", conf={"version": versions["bad"]})
    assert run.state == "success", run
    assert run.tasks["promote_now"][0] == "success" and run.tasks["start_canary"][0] == "skipped"
    assert registry.alias_version("champion")["version"] == versions["bad"]
    assert any("promoted to champion" in t for t in slack.texts())


def test_a_better_challenger_is_promoted_on_evidence(run_dag, versions, service, curated, slack):
    given(curated, versions["bad"])
    traffic = canary_traffic(curated, service, versions["good"], ["2013-02-22", "2013-02-23"])
    run = run_dag("deploy_model", "2013-02-23", conf=CONF | {"version": versions["good"], "date": "2013-02-21"})
    traffic.check()
    assert run.state == "success", run
    assert run.tasks["decide"][0] == "success"
    assert registry.alias_version("champion")["version"] == versions["good"]
    assert registry.alias_version("challenger") is None
    evidence = curated.read_json("reports", "deployments", f"v{versions['good']}.json")
    assert evidence["decision"] == "promote" and evidence["rows"] >= 800
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
    given(curated, versions["good"])
    traffic = canary_traffic(curated, service, versions["bad"], ["2013-02-24", "2013-02-25"])
    run = run_dag("deploy_model", "2013-02-25", conf=CONF | {"version": versions["bad"], "date": "2013-02-23"})
    traffic.check()
    assert run.state == "success", run
    assert registry.alias_version("champion")["version"] == versions["good"]
    assert registry.alias_version("challenger") is None
    assert rollouts.current(curated)["status"] == "rolled_back"
    evidence = curated.read_json("reports", "deployments", f"v{versions['bad']}.json")
    assert evidence["decision"] == "rollback" and evidence["logloss"]["ci95"][0] > 0
    assert any(f"Model v{versions['bad']} rolled back" in t for t in slack.texts())


def test_a_canary_without_evidence_is_rolled_back_after_wait_hours(run_dag, versions, curated, slack):
    """wait_hours is honoured: no flights come in, the waiting time ends, the challenger is rolled back."""
    given(curated, versions["good"])
    t0 = time.monotonic()
    run = run_dag(
        "deploy_model",
        "2013-02-27",
        conf={"version": versions["bad"], "date": "2013-03-10", "wait_hours": 0.001, "min_labelled_per_arm": 400},
    )
    assert run.state == "success", run
    assert run.tasks["decide"][0] == "success" and time.monotonic() - t0 < 120
    assert registry.alias_version("champion")["version"] == versions["good"]
    assert registry.alias_version("challenger") is None
    rollout = rollouts.current(curated)
    assert rollout["status"] == "rolled_back" and "not enough labelled canary flights" in rollout["evidence"]["why"]
    assert any(f"Model v{versions['bad']} rolled back" in t and "not enough" in t for t in slack.texts())


def test_manual_rollback_of_the_champion_is_refused(run_dag, versions, curated):
    given(curated, versions["good"])
    run = run_dag("deploy_model", "2013-02-26", conf={"version": versions["good"], "action": "rollback"})
    assert run.state == "failed" and run.tasks["rollback_now"][0] == "failed"
    assert registry.alias_version("champion")["version"] == versions["good"]
