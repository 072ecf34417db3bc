"""deploy_model end to end: a real prediction service, traffic replayed over HTTP day by day, outcomes from
ingestion, and the rollout's ramp (shadow -> 50 % -> 100 %) advanced on the service's own signals, then promotion
or roll-back decided on the paired comparison (dag.test())."""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest
import yaml
from curation import curate_days

from include.mlops.core import layout, registry, rollouts
from include.mlops.core.config import CONFIG_DIR
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


# a short ramp for a test: each stage needs 5 requests (a replayed day is about 18 batches) and 30 rescored flights
STAGES = [
    {"share": 0.0, "min_hours": 0, "min_requests": 5},
    {"share": 0.5, "min_hours": 0, "min_requests": 5},
    {"share": 1.0, "min_hours": 0, "min_requests": 5},
]


@pytest.fixture
def ramp(tmp_path, monkeypatch, service):
    """deploy.yaml with the short ramp (MLOPS_CONFIG_DIR), and the service's URL for the stages' signals."""
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    f = folder / "deploy.yaml"
    values = yaml.safe_load(f.read_text())
    values["stages"] = STAGES
    values["limits"]["min_rescored"] = 30
    # the latency limit is the unit tests' (test_rollout_ramp.py); here the stages move on evidence, and a p99 of a
    # loaded 2-core machine (4.5 s seen in CI, another worker training beside the service) must not decide
    values["limits"]["latency_p99_ms"] = 60000
    f.write_text(yaml.safe_dump(values, sort_keys=False))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(folder))
    monkeypatch.setenv("MLOPS_SERVE_URL", service)
    monkeypatch.setenv("MLOPS_SERVE_TOKEN", SERVE_TOKEN)
    return STAGES


class CanaryTraffic(threading.Thread):
    """What production does while the rollout runs: once the canary is live (rollout written, the service scoring
    the challenger), a day's flights are predicted over HTTP, then its outcomes are ingested, and the next day
    comes once the rollout has moved (a stage advanced, or it ended), until it ends or the days run out. Nothing
    is asserted in this thread: ``check()`` raises in the test's own thread what went wrong here."""

    def __init__(self, lake, url, version, days):
        super().__init__(daemon=True)
        self.lake, self.url, self.version, self.days = lake, url, version, days
        self.error: str | None = None
        self.replayed: list = []
        self.stage_of_day: dict[str, float] = {}

    def _live(self) -> dict | None:
        r = rollouts.current(self.lake)
        h = httpx.get(self.url + "/health").json()
        if r and r["status"] == "canary" and str(r["version"]) == self.version and h["challenger"] == self.version:
            return r
        return None

    def run(self):
        try:
            deadline = time.time() + 120
            while (r := self._live()) is None:
                if time.time() > deadline:
                    self.error = f"the canary of v{self.version} never went live: rollout {rollouts.current(self.lake)}"
                    return
                time.sleep(0.3)
            for d in self.days:
                r = rollouts.current(self.lake)
                if r["status"] != "canary":
                    return
                deadline = time.time() + 10  # the service follows the stage's share
                while httpx.get(self.url + "/health").json()["canary_share"] != r["canary_share"]:
                    if time.time() > deadline:
                        self.error = f"the service did not follow the share {r['canary_share']}"
                        return
                    time.sleep(0.2)
                self.stage_of_day[d] = r["canary_share"]
                self.replayed.append(replay(d, self.url, concurrency=4, token=SERVE_TOKEN))
                time.sleep(1.5)  # let the service flush its prediction log
                curate_days(self.lake, d, 1)
                deadline = time.time() + 60
                while True:  # the next day once the rollout moved
                    now = rollouts.current(self.lake)
                    if now["status"] != "canary" or now.get("stage") != r.get("stage") or time.time() > deadline:
                        break
                    time.sleep(0.3)
        except Exception as exc:  # noqa: BLE001 - reported to the test by check()
            self.error = f"{type(exc).__name__}: {exc}"

    def check(self):
        self.join(300)
        assert not self.is_alive(), "the traffic thread did not finish"
        assert self.error is None, self.error
        assert self.replayed and all(r.errors == 0 for r in self.replayed), self.replayed


def canary_traffic(lake, url, version, days) -> CanaryTraffic:
    t = CanaryTraffic(lake, url, version, days)
    t.start()
    return t


# the canary's flights are those of the days after the data date the run was started for
CONF = {"min_labelled": 400, "min_days": 1, "max_logloss_increase": 0.0}  # one day decides here


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


def test_a_better_challenger_climbs_every_stage_and_is_promoted(run_dag, versions, service, ramp, curated, slack):
    given(curated, versions["bad"])
    days = ["2013-02-22", "2013-02-23", "2013-02-24", "2013-02-25"]
    traffic = canary_traffic(curated, service, versions["good"], days)
    run = run_dag("deploy_model", "2013-02-25", conf=CONF | {"version": versions["good"], "date": "2013-02-21"})
    traffic.check()
    assert run.state == "success", run
    assert run.tasks["decide"][0] == "success"
    assert registry.alias_version("champion")["version"] == versions["good"]
    assert registry.alias_version("challenger") is None
    # the ramp: one day of traffic per stage, each stage left on its signals
    assert list(traffic.stage_of_day.values()) == [0.0, 0.5, 1.0], traffic.stage_of_day
    rollout = rollouts.current(curated)
    assert rollout["status"] == "promoted" and [h["share"] for h in rollout["history"]] == [0.0, 0.5, 1.0]
    assert [h["outcome"] for h in rollout["history"]] == ["advance", "advance", "promote"], rollout["history"]
    shadow = rollout["history"][0]["signals"]
    assert shadow["requests"] >= 5 and shadow["rescored"] >= 30 and shadow["agreement"] == 1.0, shadow
    assert shadow["p99_ms"] is not None and shadow["error_rate"] == 0.0 and shadow["memory_mb"] > 0, shadow
    half = rollout["history"][1]["signals"]
    assert half["by_arm"]["challenger"]["requests"] >= 5 and half["by_arm"]["champion"]["requests"] >= 5, half
    evidence = curated.read_json("reports", "deployments", f"v{versions['good']}.json")
    assert evidence["decision"] == "promote" and evidence["verdict"] == "promote" and evidence["rows"] >= 400
    assert evidence["stage"] == {"index": 2, "share": 1.0, "of": 3}
    assert evidence["logloss"]["ci95"][1] <= 0.0 and evidence["logloss"]["challenger"] < evidence["logloss"]["champion"]
    texts = slack.texts()
    assert any(f"Canary started: v{versions['good']} at the shadow stage" in t for t in texts), texts
    assert any(f"Canary of v{versions['good']}: now at the 50% stage" in t for t in texts), texts
    assert any(f"Canary of v{versions['good']}: now at the 100% stage" in t for t in texts), texts
    msg = next(t for t in texts if "promoted to champion" in t and f"v{versions['good']}" in t)
    assert "log-loss challenger" in msg and "95 % CI" in msg
    # the audit trail: each decision once, by this run, chained (the head in the registry)
    from include.mlops.core import audit

    trail = [r for r in audit.history(curated, versions["good"]) if r["actor"]["run_id"] == run.run_id]
    assert [r["event"] for r in trail] == ["canary_started", "stage_changed", "stage_changed", "promoted"], trail
    assert [r["evidence"]["share"] for r in trail[1:3]] == [0.5, 1.0] and trail[-1]["evidence"]["verdict"] == "promote"
    assert trail[-1]["evidence"]["logloss"]["ci95"] == evidence["logloss"]["ci95"]
    assert audit.verify(curated)["ok"], audit.verify(curated)
    deadline = time.time() + 10  # the service follows the aliases and the rollout without a restart
    while httpx.get(service + "/versions").json()["challenger"] is not None and time.time() < deadline:
        time.sleep(0.2)
    served = httpx.get(service + "/versions").json()
    assert served["champion"] == versions["good"] and served["challenger"] is None and served["canary_share"] == 0.0


def test_a_worse_challenger_is_rolled_back_from_the_shadow(run_dag, versions, service, ramp, curated, slack, tmp_path):
    """Its first day in the shadow already shows the harm on the paired comparison: rolled back there, before
    any client got one of its answers. (The shadow here lasts an hour at least, as the shipped one lasts two: its
    signals alone would otherwise raise the share within the day, before the day's outcomes come in.)"""
    f = tmp_path / "config" / "deploy.yaml"
    values = yaml.safe_load(f.read_text())
    values["stages"][0]["min_hours"] = 1
    f.write_text(yaml.safe_dump(values, sort_keys=False))
    given(curated, versions["good"])
    traffic = canary_traffic(curated, service, versions["bad"], ["2013-02-26", "2013-02-27"])
    run = run_dag("deploy_model", "2013-02-27", conf=CONF | {"version": versions["bad"], "date": "2013-02-25"})
    traffic.check()
    assert run.state == "success", run
    assert registry.alias_version("champion")["version"] == versions["good"]
    assert registry.alias_version("challenger") is None
    rollout = rollouts.current(curated)
    assert rollout["status"] == "rolled_back" and [h["share"] for h in rollout["history"]] == [0.0], rollout
    assert rollout["history"][0]["outcome"] == "rollback" and "harm" in rollout["history"][0]["why"]
    assert traffic.stage_of_day == {"2013-02-26": 0.0}, traffic.stage_of_day
    evidence = curated.read_json("reports", "deployments", f"v{versions['bad']}.json")
    assert evidence["decision"] == "rollback" and evidence["logloss"]["ci95"][0] > 0
    from include.mlops.core import predictions

    served = predictions.predictions(curated, ["2013-02-26"], since=rollout["started_at"])
    assert len(served) > 300 and set(served["version"].astype(str)) == {versions["good"]}  # no client saw v-bad
    assert any(f"Model v{versions['bad']} rolled back" in t for t in slack.texts())


class Skewed:
    """A challenger whose serving path is wrong: the service scores with it, +0.05 on every flight, while the
    registry's version (what the rollout rescores with) is the true model."""

    def __init__(self, served):
        self.served = served

    def __getattr__(self, name):
        return getattr(self.served, name)

    def predict_array(self, X, threads=1):
        return self.served.predict_array(X, threads) + 0.05


@pytest.fixture
def skewed_service(versions, curated, monkeypatch, ramp):
    """A service whose challenger (the good version) serves skewed scores; the rollout reads its signals."""
    from servers import serve

    from include.mlops.serve.app import create_app, registry_store

    store = registry_store(curated)
    load = store._load
    store._load = lambda v: Skewed(load(v)) if v == versions["good"] else load(v)
    app = create_app(store, curated, refresh_s=0.3, flush_rows=200, flush_s=0.3, token=SERVE_TOKEN)
    with serve(app) as url:
        monkeypatch.setenv("MLOPS_SERVE_URL", url)
        yield url


def test_a_served_score_that_disagrees_with_its_rescoring_stops_the_ramp(
    run_dag, versions, skewed_service, curated, slack
):
    """The shadow's scores of a day, rescored offline with the registry's version on the inputs the service
    logged, do not match what the service computed: the rollout is rolled back at the shadow stage, naming the
    agreement, whatever the comparison would say."""
    given(curated, versions["bad"])
    traffic = canary_traffic(curated, skewed_service, versions["good"], ["2013-02-28", "2013-03-01"])
    run = run_dag("deploy_model", "2013-03-01", conf=CONF | {"version": versions["good"], "date": "2013-02-27"})
    traffic.check()
    assert run.state == "success", run
    assert registry.alias_version("champion")["version"] == versions["bad"]  # not promoted
    rollout = rollouts.current(curated)
    assert rollout["status"] == "rolled_back" and [h["share"] for h in rollout["history"]] == [0.0], rollout
    why = rollout["history"][0]["why"]
    assert "over its limits at the shadow stage" in why and "served = rescored on 0.00%" in why, why
    assert any(f"Model v{versions['good']} rolled back" in t for t in slack.texts())


def test_a_canary_without_evidence_is_rolled_back_after_wait_hours(run_dag, versions, curated, slack):
    """wait_hours is honoured: no flights come in, the waiting time ends, the challenger is rolled back."""
    given(curated, versions["good"])
    t0 = time.monotonic()
    run = run_dag(
        "deploy_model",
        "2013-02-27",
        conf={"version": versions["bad"], "date": "2013-03-10", "wait_hours": 0.001, "min_labelled": 400},
    )
    assert run.state == "success", run
    assert run.tasks["decide"][0] == "success" and time.monotonic() - t0 < 120
    assert registry.alias_version("champion")["version"] == versions["good"]
    assert registry.alias_version("challenger") is None
    rollout = rollouts.current(curated)
    assert rollout["status"] == "rolled_back" and "no decision after" in rollout["evidence"]["why"], rollout
    assert "wait_hours 0.001" in rollout["evidence"]["why"], rollout
    assert any(f"Model v{versions['bad']} rolled back" in t and "no decision after" in t for t in slack.texts())


def test_manual_rollback_of_the_champion_is_refused(run_dag, versions, curated):
    given(curated, versions["good"])
    run = run_dag("deploy_model", "2013-02-26", conf={"version": versions["good"], "action": "rollback"})
    assert run.state == "failed" and run.tasks["rollback_now"][0] == "failed"
    assert registry.alias_version("champion")["version"] == versions["good"]


def test_a_promotion_by_hand_retried_is_recorded_once(run_dag, versions, curated, slack, monkeypatch):
    """The worker is lost after the champion was set and recorded: the retry finds the champion already set
    (from == to) and keeps the first try's record, which names the champion before."""
    from include.mlops.core import audit
    from mlops_airflow.tasks import deploy_model as tasks

    given(curated, versions["bad"])
    real, calls = tasks._alert, []

    def lost_once(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 1:
            raise ConnectionError("the worker was lost after the record (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(tasks, "_alert", lost_once)
    run = run_dag("deploy_model", "2013-02-26", conf={"version": versions["good"], "action": "promote"})
    assert run.state == "success" and run.tasks["promote_now"] == ("success", 2), run
    assert registry.alias_version("champion")["version"] == versions["good"]
    trail = [r for r in audit.history(curated, versions["good"]) if r["actor"]["run_id"] == run.run_id]
    assert [(r["event"], r["evidence"]["from"]) for r in trail] == [("alias_changed", versions["bad"])], trail


# --- a person's approval before the promotion (deploy.yaml's approval) -----------------------------------------


def give_up(run_id: str) -> None:
    """Airflow's own timeout sweep answering the approval of ``run_id`` now (its default: "Roll back")."""
    import datetime as dt

    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as s:
        ti = s.query(TaskInstance).filter_by(dag_id="deploy_model", task_id="approve_promotion", run_id=run_id).one()
        ti.trigger_timeout = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()


class Approver(threading.Thread):
    """A person at the run's Required Actions page: once ``approve_promotion`` waits for input, ``respond(run_id)``
    answers it (over the Core API, or by letting the deadline pass); nothing is asserted here (``check``)."""

    def __init__(self, respond):
        super().__init__(daemon=True)
        self.respond, self.error, self.run_id = respond, None, None

    def run(self):
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        try:
            deadline = time.time() + 240
            while self.run_id is None:
                if time.time() > deadline:
                    self.error = "approve_promotion never waited for input"
                    return
                with create_session() as s:
                    ti = (
                        s.query(TaskInstance)
                        .filter_by(dag_id="deploy_model", task_id="approve_promotion", state="awaiting_input")
                        .one_or_none()
                    )
                    if ti is not None:
                        self.run_id = ti.run_id
                time.sleep(0.3)
            self.respond(self.run_id)
        except BaseException as exc:  # noqa: BLE001 - reported to the test by check()
            import traceback

            self.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            if self.run_id is not None:
                give_up(self.run_id)  # the run must end for the test to report it

    def check(self):
        self.join(60)
        assert not self.is_alive() and self.error is None, self.error


@pytest.fixture
def core_api(monkeypatch):
    """Airflow's Core API (REST) on this test's metadata database, in process, with the production launcher's
    auth manager and two users: ``otto`` (op) and ``vic`` (viewer). ``call(user, method, path, json)``."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "mlops_airflow.auth.MlopsAuthManager")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "otto:op,vic:viewer")
    from airflow.api_fastapi.app import create_app, get_auth_manager

    client = TestClient(create_app(apps="core"))
    roles = {"otto": "op", "vic": "viewer"}

    def call(user: str, method: str, path: str, json: dict | None = None):
        token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role=roles[user]))
        return client.request(method, "/api/v2" + path, json=json, headers={"Authorization": f"Bearer {token}"})

    return call


@pytest.fixture
def approval_ramp(ramp, tmp_path):
    """One stage (share 1.0) and an approval before the promotion (deploy.yaml's ``approval``)."""
    f = tmp_path / "config" / "deploy.yaml"
    values = yaml.safe_load(f.read_text())
    values["stages"] = [{"share": 1.0, "min_hours": 0, "min_requests": 5}]
    values["approval"] = {"required": True, "timeout_hours": 0.0005, "approvers": []}  # 1.8 s to answer
    f.write_text(yaml.safe_dump(values, sort_keys=False))
    return values


def _hitl(run_id: str) -> str:
    return f"/dags/deploy_model/dagRuns/{run_id}/taskInstances/approve_promotion/-1/hitlDetails"


@pytest.mark.parametrize(
    ("answer", "day"), [("approve", "2013-03-02"), ("reject", "2013-03-03"), ("timeout", "2013-03-04")]
)
def test_a_promotion_waits_for_a_persons_approval(
    answer, day, run_dag, versions, service, approval_ramp, core_api, curated, slack, tmp_path
):
    """The evidence says promote; the run asks a person (Slack says so, the rollout says where) and only an
    approval promotes: a rejection, or no answer by the deadline (Airflow's scheduler answers "Roll back"), rolls
    the challenger back. A viewer cannot answer; the answer and who gave it are in the audit trail."""
    from include.mlops.core import audit
    from include.mlops.deploy import approval

    if answer != "timeout":  # a person answers well within the deadline
        f = tmp_path / "config" / "deploy.yaml"
        values = yaml.safe_load(f.read_text())
        values["approval"]["timeout_hours"] = 1
        f.write_text(yaml.safe_dump(values, sort_keys=False))
    seen_waiting, seen = {}, {}

    def respond(run_id):
        seen_waiting.update(rollouts.current(curated).get("approval") or {})
        asked = core_api("vic", "GET", _hitl(run_id))  # what the Required Actions page shows; a viewer reads it
        assert asked.status_code == 200, asked.text
        seen.update(asked.json())
        if answer == "timeout":  # what the scheduler does each loop once the deadline passed
            from airflow.jobs.job import Job
            from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

            time.sleep(2.5)
            SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()
            return
        refused = core_api("vic", "PATCH", _hitl(run_id), {"chosen_options": [approval.APPROVE], "params_input": {}})
        assert refused.status_code == 403, refused.text
        chosen = approval.APPROVE if answer == "approve" else approval.REJECT
        r = core_api(
            "otto", "PATCH", _hitl(run_id), {"chosen_options": [chosen], "params_input": {"reason": "seen it"}}
        )
        assert r.status_code == 200, r.text

    given(curated, versions["bad"])
    person = Approver(respond)
    person.start()
    traffic = canary_traffic(curated, service, versions["good"], [day])
    before = day[:-2] + f"{int(day[-2:]) - 1:02d}"
    # one day of flights decides here: promote when the challenger is, with 95 % confidence, at most 0.02 worse
    conf = CONF | {"version": versions["good"], "date": before, "max_logloss_increase": 0.02, "wait_hours": 0.2}
    run = run_dag("deploy_model", day, conf=conf)
    traffic.check()
    person.check()
    assert run.state == "success", run
    assert run.tasks["approve_promotion"][0] == "success" and run.tasks["decide"][0] == "success", run
    assert seen_waiting["status"] == "waiting" and "/required_actions" in seen_waiting["link"], seen_waiting
    assert seen["subject"] == f"Promote v{versions['good']} to champion?", seen
    assert "log-loss challenger / champion" in seen["body"] and seen["options"] == approval.OPTIONS, seen
    texts = slack.texts()
    assert any(f"Approval waits: promote v{versions['good']}" in t and "required_actions" in t for t in texts), texts
    promoted = answer == "approve"
    champion = versions["good"] if promoted else versions["bad"]
    assert registry.alias_version("champion")["version"] == champion
    assert registry.alias_version("challenger") is None
    rollout = rollouts.current(curated)
    assert rollout["status"] == ("promoted" if promoted else "rolled_back"), rollout
    status = {"approve": "approved", "reject": "rejected", "timeout": "timed_out"}[answer]
    assert rollout["approval"]["status"] == status, rollout["approval"]
    trail = [r for r in audit.history(curated, versions["good"]) if r["actor"]["run_id"] == run.run_id]
    events = [r["event"] for r in trail]
    assert events == [
        "canary_started",
        "approval_asked",
        "approval_answered",
        "promoted" if promoted else "rolled_back",
    ]
    answered = trail[2]
    if answer == "timeout":
        assert answered["actor"]["kind"] == "dag_run" and answered["evidence"]["timed_out"] is True, answered
        assert "no answer" in answered["why"] and "no answer" in trail[3]["why"], trail
    else:
        assert answered["actor"] == answered["actor"] | {"kind": "person", "user": "otto"}, answered
        assert answered["evidence"]["reason"] == "seen it" and "by otto: seen it" in trail[3]["why"], trail
    assert audit.verify(curated)["ok"], audit.verify(curated)


def test_an_approval_that_cannot_be_asked_rolls_the_challenger_back(
    run_dag, versions, service, approval_ramp, curated, slack, monkeypatch
):
    """The lake refuses the rollout's write that records the question: the asking task fails, retries, then fails
    for good before anyone is asked; nothing is promoted and ``rollback_on_failure`` takes the challenger out."""
    from include.mlops.deploy import canary

    def refused(*args, **kwargs):
        raise OSError("the lake refused the write (injected)")

    monkeypatch.setattr(canary, "approval", refused)
    given(curated, versions["bad"])
    guard = Approver(give_up)  # were it asked after all, the deadline answers at once and the test fails below
    guard.start()
    traffic = canary_traffic(curated, service, versions["good"], ["2013-03-05"])
    conf = CONF | {"version": versions["good"], "date": "2013-03-04", "max_logloss_increase": 0.02, "wait_hours": 0.2}
    run = run_dag("deploy_model", "2013-03-05", conf=conf)
    traffic.check()
    assert guard.run_id is None, "the approval was asked although its record could not be written"
    # the run's leaf took the challenger out: the run is green (as when the evidence cannot be gathered); the
    # failed task alerted Slack
    assert run.state == "success", run
    assert run.tasks["approve_promotion"] == ("failed", 3) and run.tasks["decide"][0] == "upstream_failed", run
    assert run.tasks["rollback_on_failure"][0] == "success", run
    assert registry.alias_version("champion")["version"] == versions["bad"]
    assert registry.alias_version("challenger") is None
    assert rollouts.current(curated)["status"] == "rolled_back"
    assert any(f"Model v{versions['good']} rolled back: the canary could not be decided" in t for t in slack.texts())
