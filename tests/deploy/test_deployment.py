"""The lifecycle on a production-shaped deployment, driven the way users drive it: through the REST API v2.

Scheduler (LocalExecutor), dag-processor, triggerer and api-server run as separate processes on PostgreSQL
(``conftest.py``). The test unpauses the DAGs, publishes upstream drops, triggers ``ingest_flights`` for four
dates, lets the Asset schedule start ``train_model`` (runs skip until four days are curated, then one trains
with Horovod and passes the gate) and the gate trigger ``deploy_model`` (the first model is promoted directly),
then checks run states, task logs, the lake, the registry, Slack, the model-state page, and that no secret
reached any log. Then the same deployment's web UI in a real browser: headless Chromium (Debian's ``chromium``,
installed with apt-get when missing) driven by Playwright logs in, sees every DAG of ``dags/``, opens
``train_model``'s trigger form with its Params, triggers a run and opens the "Model state" page of the UI
plugin. Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from deploy_support import LAUNCHER, OUTPUT, ROOT, TERMINAL, launcher

FIRST_DATES = ["2013-01-17", "2013-01-18", "2013-01-19"]
LAST_DATE = "2013-01-20"  # the fourth curated day: the Asset-triggered train_model run after it trains
LIFECYCLE_DAGS = ("ingest_flights", "train_model", "deploy_model")
# the project's DAGs: dags/ingest.py makes one ingest_<data set> per ingestion group of the declaration
ALL_DAGS = (*LIFECYCLE_DAGS, "simulate_upstream", "monitor_model", "tune_model")


def _launcher(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return launcher(env, *args, timeout_s=120)


# security of the launcher's configuration (no deployment needed) ---------------------------------------------
@pytest.fixture
def good_env(tmp_path):
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "MLOPS_SERVE_"))}
    token = tmp_path / "serve_token"
    token.write_text(secrets.token_urlsafe(32) + "\n")
    return env | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://postgres@127.0.0.1:5432/unused",
        "AIRFLOW__API_AUTH__JWT_SECRET": "x" * 32,
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "MLOPS_SERVE_TOKEN_FILE": str(token),
    }


def test_launcher_accepts_a_production_configuration(good_env):
    out = _launcher(good_env, "check")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"AIRFLOW__API_AUTH__JWT_SECRET": None}, "AIRFLOW__API_AUTH__JWT_SECRET is not set"),
        ({"AIRFLOW__API_AUTH__JWT_SECRET": "y" * 31}, "AIRFLOW__API_AUTH__JWT_SECRET is too short (31 characters"),
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": None}, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not set"),
        ({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/airflow.db"}, "must name a PostgreSQL database"),
        ({"AIRFLOW__CORE__FERNET_KEY": None}, "AIRFLOW__CORE__FERNET_KEY is not set"),
        ({"AIRFLOW__CORE__FERNET_KEY": "not-a-key"}, "not a valid Fernet key"),
        ({"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}, "disables login"),
        ({"MLOPS_PASSWORD_ADMIN": "admin"}, "user 'admin' has a default password"),
        ({"MLOPS_PASSWORD_ADMIN": "short-pass"}, "shorter than 16 characters"),
        ({"AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor"}, "KubernetesExecutor is not supported"),
        ({"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"}, "AIRFLOW__CELERY__BROKER_URL is not set"),
        ({"MLOPS_SERVE_TOKEN_FILE": None}, "MLOPS_SERVE_TOKEN (or MLOPS_SERVE_TOKEN_FILE) is not set"),
        ({"MLOPS_SERVE_TOKEN": "z" * 31}, "token (MLOPS_SERVE_TOKEN) is too short (31 characters"),
        ({"MLOPS_SERVE_TOKEN_FILE": "/nonexistent/serve_token"}, "MLOPS_SERVE_TOKEN_FILE cannot be read"),
    ],
    ids=[
        "no-jwt",
        "short-jwt",
        "no-db",
        "sqlite",
        "no-fernet",
        "bad-fernet",
        "all-admins",
        "admin-admin",
        "short-password",
        "executor",
        "celery-no-broker",
        "no-serve-token",
        "short-serve-token",
        "no-serve-token-file",
    ],
)
def test_launcher_refuses_an_unsafe_configuration(good_env, change, problem):
    env = {k: v for k, v in (good_env | change).items() if v is not None}
    for cmd in ("check", "up"):
        out = _launcher(env, cmd)
        assert out.returncode == 2, (cmd, out.stdout, out.stderr)
        assert "refusing to start" in out.stderr and problem in out.stderr, out.stderr
    # refused before anything started or was written
    assert not (Path(env["AIRFLOW_HOME"]) / "prod" / "pids.json").exists()
    assert not (Path(env["AIRFLOW_HOME"]) / "secrets").exists()


def test_launcher_accepts_the_celery_executor_with_a_broker(good_env):
    """Celery with a Redis broker: the result backend (the metadata database) and the visibility timeout are
    defaulted, one worker on this host; a visibility timeout shorter than the longest task is refused."""
    celery = good_env | {"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor", "AIRFLOW__CELERY__BROKER_URL": "redis://r:6379/0"}
    out = _launcher(celery, "check")
    assert out.returncode == 0, out.stderr
    short = celery | {"AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "600"}
    out = _launcher(short, "check")
    assert out.returncode == 2 and "VISIBILITY_TIMEOUT='600': must be a whole number" in out.stderr, out.stderr


def test_launcher_refuses_a_default_password_in_the_passwords_file(good_env):
    pw = Path(good_env["AIRFLOW_HOME"]) / "secrets" / "passwords.json"
    pw.parent.mkdir(parents=True)
    pw.write_text(json.dumps({"admin": "admin"}))
    out = _launcher(good_env, "check")
    assert out.returncode == 2 and "user 'admin' has a default password" in out.stderr, out.stderr


def test_launcher_refuses_a_short_serve_token_in_its_file(good_env):
    Path(good_env["MLOPS_SERVE_TOKEN_FILE"]).write_text("t" * 20 + "\n")
    out = _launcher(good_env, "check")
    assert out.returncode == 2 and "token (MLOPS_SERVE_TOKEN_FILE) is too short (20 characters" in out.stderr
    assert "t" * 20 not in out.stdout + out.stderr  # the token is never printed


def test_the_service_component_shares_its_address_and_token(good_env, monkeypatch):
    """The fifth component listens where MLOPS_SERVE_URL of the Airflow components points; without it (a
    service that runs elsewhere) no URL is made up and no token is required."""
    monkeypatch.syspath_prepend(str(LAUNCHER.parent))
    from prod_config import components, environment

    env = environment(good_env | {"MLOPS_SERVE_PORT": "8123"})
    assert components(env) == ("scheduler", "dag-processor", "triggerer", "api-server", "serve")
    assert env["MLOPS_SERVE_URL"] == "http://127.0.0.1:8123" and env["MLOPS_SERVE_HOST"] == "127.0.0.1"
    assert environment(good_env | {"MLOPS_SERVE_URL": "https://gw.example"})["MLOPS_SERVE_URL"] == "https://gw.example"
    off = {k: v for k, v in good_env.items() if k != "MLOPS_SERVE_TOKEN_FILE"} | {"MLOPS_SERVE_COMPONENT": "false"}
    assert "serve" not in components(environment(off)) and "MLOPS_SERVE_URL" not in environment(off)
    assert _launcher(off, "check").returncode == 0


def test_repository_configuration_has_no_default_credentials():
    """The prod path sets no password anywhere in the repository; ``airflow_settings.yaml`` declares shapes."""
    import yaml

    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    for conn in settings["airflow"]["connections"]:
        assert not conn.get("conn_password") and not conn.get("conn_login"), conn["conn_id"]
    for path in (LAUNCHER, ROOT / "Makefile", ROOT / "Dockerfile"):
        text = path.read_text()
        assert "admin:admin@" not in text and "SIMPLE_AUTH_MANAGER_ALL_ADMINS=True" not in text, path


# the lifecycle ------------------------------------------------------------------------------------------------
def _run_states(dep, dag_id: str) -> dict[str, str]:
    return {r["dag_run_id"]: r["state"] for r in dep.runs(dag_id)}


def _all_finished(dep, dag_id: str, run_ids) -> dict[str, str] | None:
    states = _run_states(dep, dag_id)
    mine = {r: states.get(r) for r in run_ids}
    return mine if all(s in TERMINAL for s in mine.values()) else None


def _settled(dep, dag_id: str) -> bool:
    """No run of the DAG active, and no Asset event waiting to start another one."""
    if not all(s in TERMINAL for s in _run_states(dep, dag_id).values()):
        return False
    r = dep.api("GET", f"/api/v2/dags/{dag_id}/assets/queuedEvents")
    return r.status_code == 404 or (r.status_code == 200 and not r.json().get("queued_events"))


def test_the_lifecycle_through_the_rest_api(deployment):
    dep = deployment
    t0 = time.monotonic()
    timings = {"deployment_start_s": round(dep.start_s, 1)}

    # security: no token, a forged token, a wrong password
    assert httpx.get(dep.url + "/api/v2/dags", timeout=30).status_code == 401
    assert httpx.get(
        dep.url + "/api/v2/dags", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30
    ).status_code in (401, 403)
    assert (
        httpx.post(dep.url + "/auth/token", json={"username": "admin", "password": "admin"}, timeout=30).status_code
        == 401
    )
    assert httpx.get(dep.url + "/mlops/api/state", timeout=30).status_code == 401
    # the generated password: random, long, readable by the owner only, never printed by the launcher
    pw_file = Path(dep.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert len(dep.password) >= 16 and dep.password not in dep.start_output
    health = httpx.get(dep.url + "/api/v2/monitor/health", timeout=30).json()
    assert {health[c]["status"] for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {"healthy"}

    # the deployment runs what the documentation says it runs
    cfg = dep.python(
        "import json\nfrom airflow.configuration import conf\n"
        "print(json.dumps([conf.get('core', 'executor'), conf.get('database', 'sql_alchemy_conn')"
        ".split(':')[0]]))"
    )
    assert cfg == ["LocalExecutor", "postgresql+psycopg2"]

    # every DAG of dags/ parsed (the dag-processor's first pass), no import error
    expected = set(ALL_DAGS)
    dep.wait_for(
        "every DAG to be parsed",
        lambda: expected <= {d["dag_id"] for d in dep.get("/api/v2/dags", params={"limit": 100})["dags"]},
        180,
    )
    assert dep.get("/api/v2/importErrors")["total_entries"] == 0
    assert dep.get("/api/v2/plugins/importErrors")["total_entries"] == 0
    assert "mlops_model_state" in {p["name"] for p in dep.get("/api/v2/plugins")["plugins"]}

    # who may change what is served (plugins/mlops_airflow/auth.py), over REST: a user and a viewer read
    # deploy_model but may neither trigger it nor change it; an op may; a user still changes another DAG
    passwords = json.loads(pw_file.read_text())

    def as_user(name: str) -> dict[str, str]:
        r = httpx.post(dep.url + "/auth/token", json={"username": name, "password": passwords[name]}, timeout=30)
        assert r.status_code in (200, 201), (name, r.text)
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def call(who: dict, method: str, path: str, **kwargs) -> int:
        return httpx.request(method, dep.url + path, headers=who, timeout=30, **kwargs).status_code

    paused = {d: dep.get(f"/api/v2/dags/{d}")["is_paused"] for d in ("deploy_model", "monitor_model")}
    trigger = {"logical_date": None, "conf": {"version": "1", "action": "promote"}}
    for name in ("ana", "vic"):
        who = as_user(name)
        assert call(who, "GET", "/api/v2/dags/deploy_model") == 200, name
        assert call(who, "POST", "/api/v2/dags/deploy_model/dagRuns", json=trigger) == 403, name
        assert call(who, "PATCH", "/api/v2/dags/deploy_model", json={"is_paused": paused["deploy_model"]}) == 403
    assert (
        call(as_user("ana"), "PATCH", "/api/v2/dags/monitor_model", json={"is_paused": paused["monitor_model"]}) == 200
    )
    assert (
        call(as_user("otto"), "PATCH", "/api/v2/dags/deploy_model", json={"is_paused": paused["deploy_model"]}) == 200
    )
    for dag_id in LIFECYCLE_DAGS:
        r = dep.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        assert r.status_code == 200 and r.json()["is_paused"] is False, r.text

    # upstream drops, then ingestion triggered through REST for each date
    from include.mlops.simulate.upstream import Upstream

    up = Upstream(dep.lake)
    for d in FIRST_DATES:
        up.publish_day(d)
    first = [dep.trigger("ingest_flights", f"{d}T00:00:00Z")["dag_run_id"] for d in FIRST_DATES]
    states = dep.wait_for("the first ingestion runs", lambda: _all_finished(dep, "ingest_flights", first), 420)
    assert set(states.values()) == {"success"}, states
    timings["ingest_3_days_s"] = round(time.monotonic() - t0, 1)
    # the Asset schedule started train_model; with fewer than MLOPS_TRAIN_MIN_DAYS curated days nothing trains
    dep.wait_for("train_model runs to settle", lambda: dep.runs("train_model") and _settled(dep, "train_model"), 240)
    early = dep.runs("train_model")
    for run in early:
        tis = dep.task_instances("train_model", run["dag_run_id"])
        assert run["run_type"] == "asset_triggered" and run["state"] == "success", run
        assert tis["train"]["state"] == "skipped", {k: v["state"] for k, v in tis.items()}

    up.publish_day(LAST_DATE)
    t1 = time.monotonic()
    last = dep.trigger("ingest_flights", f"{LAST_DATE}T00:00:00Z")["dag_run_id"]
    states = dep.wait_for("the last ingestion run", lambda: _all_finished(dep, "ingest_flights", [last]), 300)
    assert states[last] == "success", states

    # Asset → train_model (trains: four days) → gate → deploy_model (first model: promoted directly)
    def trained():
        """The first run after the early ones that got past should_train (later ones may skip again)."""
        for run in dep.runs("train_model"):
            if run["dag_run_id"] in {r["dag_run_id"] for r in early}:
                continue
            if run["state"] not in TERMINAL:
                return None
            if dep.task_instances("train_model", run["dag_run_id"])["train"]["state"] != "skipped":
                return run
        return None

    train_run = dep.wait_for("the training run", trained, 420)
    timings["train_run_s"] = round(time.monotonic() - t1, 1)
    tis = dep.task_instances("train_model", train_run["dag_run_id"])
    assert train_run["state"] == "success" and train_run["run_type"] == "asset_triggered", (
        train_run,
        {k: v["state"] for k, v in tis.items()},
    )
    for task in ("build_training_set", "train", "register", "evaluation_gate", "trigger_deploy_model"):
        assert tis[task]["state"] == "success", (task, tis[task]["state"])
    run_key = train_run["dag_run_id"].replace(":", "").replace("+", "")
    decision = dep.lake.read_json("reports", "gate", run_key, "decision.json")
    version = str(decision["version"])
    assert decision["passed"] and decision["champion_version"] is None, decision

    def deployed():
        runs = [r for r in dep.runs("deploy_model") if str((r.get("conf") or {}).get("version")) == version]
        return runs[0] if runs and runs[0]["state"] in TERMINAL else None

    deploy_run = dep.wait_for("the deploy_model run", deployed, 300)
    timings["lifecycle_s"] = round(time.monotonic() - t0, 1)
    dtis = dep.task_instances("deploy_model", deploy_run["dag_run_id"])
    assert deploy_run["state"] == "success", (deploy_run, {k: v["state"] for k, v in dtis.items()})
    assert dtis["promote_now"]["state"] == "success" and dtis["start_canary"]["state"] == "skipped"

    # task logs through REST
    ingest_tis = dep.task_instances("ingest_flights", last)
    # a good day: every task succeeded; the quarantine announcement (runs only when validation rejected) skipped
    assert {k: t["state"] for k, t in ingest_tis.items() if t["state"] != "success"} == {
        f"{ds}.announce_quarantine": "skipped" for ds in ("flights", "weather")
    }, ingest_tis
    validate = ingest_tis["flights.validate"]
    log = dep.task_log("ingest_flights", last, "flights.validate", validate["try_number"])
    assert f"flights/{LAST_DATE}" in log and "passed" in log and "rule(s)" in log, log[-2000:]
    log = dep.task_log("train_model", train_run["dag_run_id"], "train", tis["train"]["try_number"])
    assert "Horovod job finished" in log, log[-2000:]
    log = dep.task_log("train_model", train_run["dag_run_id"], "evaluation_gate", tis["evaluation_gate"]["try_number"])
    assert "gate PASSED" in log, log[-2000:]
    log = dep.task_log("deploy_model", deploy_run["dag_run_id"], "plan", dtis["plan"]["try_number"])
    assert f"version {version} is promoted directly" in log, log[-2000:]

    # the lake: four curated days of each data set, the gate's decision, the rollout
    from include.mlops.core import layout

    lake = dep.lake
    for ds in ("flights", "weather"):
        assert [d.isoformat() for d in layout.partitions(lake, "curated", ds)] == FIRST_DATES + [LAST_DATE]
        for d in FIRST_DATES + [LAST_DATE]:
            assert lake.exists(f"curated/{ds}/date={d}", "part-00000.parquet")
        assert not lake.ls("quarantine", ds)
    assert lake.read_json("deployments", "rollout.json")["status"] == "promoted"
    events = dep.get("/api/v2/assets/events", params={"source_dag_id": "ingest_flights", "limit": 100})
    assert events["total_entries"] == 2 * 4, events["total_entries"]

    # the registry: the version is the champion, no challenger left
    reg = dep.registry()
    assert reg["champion"]["version"] == version and reg["challenger"] is None
    assert [v["version"] for v in reg["versions"]] == [version]

    # the prediction service, the fifth component: the champion, behind the bearer token; /health open
    from include.mlops.simulate.traffic import requests_for

    assert "serve" in json.loads((dep.airflow_home / "prod" / "pids.json").read_text())
    dep.wait_for(
        "the service to serve the champion",
        lambda: httpx.get(dep.serve_url + "/health", timeout=30).json()["champion"] == version,
        60,
        every_s=1,
    )
    batch = {"flights": requests_for(LAST_DATE)[:2]}
    assert httpx.post(dep.serve_url + "/predict/batch", json=batch, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer " + secrets.token_urlsafe(32)}
    assert httpx.post(dep.serve_url + "/predict/batch", json=batch, headers=wrong, timeout=30).status_code == 401
    r = httpx.post(
        dep.serve_url + "/predict/batch",
        json=batch,
        headers={"Authorization": f"Bearer {dep.serve_token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 2 and {p["version"] for p in predictions} == {version}, predictions
    assert all(0 <= p["delay_probability"] <= 1 for p in predictions), predictions

    # Slack got the decisions through the webhook connection
    texts = dep.slack.texts()
    assert any(t.startswith("[GATE]") and f"Model v{version} passed" in t for t in texts), texts
    assert any(f"Model v{version} promoted to champion" in t for t in texts), texts

    # the model-state page of the UI plugin, through the api-server
    page = dep.api("GET", "/mlops/models")
    assert page.status_code == 200 and f"v{version}" in page.text and "Last gate decision" in page.text
    state = dep.get("/mlops/api/state")
    assert state["champion"]["version"] == version and state["gate"]["version"] == version
    assert dep.api("GET", f"/mlops/gate/{run_key}/report").text.count("data:image/png;base64,") >= 3
    assert dep.api("GET", "/mlops/gate/..%2F..%2Fsecrets/report").status_code == 404
    # the audit trail on S3 (conditional puts), its head in the registry on PostgreSQL: the version's decisions,
    # by the train_model run the curated day's Asset started (no user: the scheduler started it)
    history = dep.get(f"/mlops/api/history/{version}")
    events = [r["event"] for r in history["records"]]
    assert history["verified"] and events[:2] == ["registered", "gate_passed"] and "promoted" in events, history
    actor = history["records"][0]["actor"]
    assert (actor["dag_id"], actor["run_id"], actor["user"]) == ("train_model", train_run["dag_run_id"], None), actor
    assert "Decisions (audit trail)" in page.text and "chain verified" in page.text

    # no secret in any log: task logs, component logs, REST-served logs
    secrets_ = {
        "slack webhook token": dep.slack.token,
        "aws secret key": dep.aws_secret,
        "jwt secret": dep.env["AIRFLOW__API_AUTH__JWT_SECRET"],
        "fernet key": dep.env["AIRFLOW__CORE__FERNET_KEY"],
        "admin password": dep.password,
        "prediction service token": dep.serve_token,
    }
    logs = dep.all_logs()
    task_logs = [p for p in logs if "prod" not in p.parts]
    assert len(task_logs) >= 20, sorted(map(str, logs))
    served = "".join(
        dep.task_log(d, r, t, ti["try_number"])
        for d, r in (
            ("train_model", train_run["dag_run_id"]),
            ("deploy_model", deploy_run["dag_run_id"]),
            ("ingest_flights", last),
        )
        for t, ti in dep.task_instances(d, r).items()
        if ti["state"] == "success"
    )
    for name, value in secrets_.items():
        leaks = [str(p) for p, text in logs.items() if value in text]
        assert not leaks, f"the {name} appears in {leaks}"
        assert value not in served, f"the {name} appears in a log served by the REST API"

    # tuning under the real scheduler: one round of two trials, mapped task instances in the tuning pool (2 slots),
    # run side by side by the LocalExecutor; train_model could take the result ("latest study")
    t2 = time.monotonic()
    assert dep.api("PATCH", "/api/v2/dags/tune_model", json={"is_paused": False}).status_code == 200
    study = {"trials": 2, "trials_per_round": 2, "rounds": 1, "window_days": 4, "end_date": LAST_DATE}
    tune_run = dep.trigger("tune_model", conf=study)["dag_run_id"]
    tuned = dep.wait_for("the tuning study", lambda: _all_finished(dep, "tune_model", [tune_run]), 300)
    assert tuned[tune_run] == "success", dep.task_instances("tune_model", tune_run)
    mapped = [
        ti
        for ti in dep.get(
            f"/api/v2/dags/tune_model/dagRuns/{quote(tune_run, safe='')}/taskInstances", params={"limit": 100}
        )["task_instances"]
        if ti["task_id"] == "trials_0"
    ]
    assert sorted(ti["map_index"] for ti in mapped) == [0, 1] and {ti["pool"] for ti in mapped} == {"tuning"}, mapped
    a, b = ({k: datetime.fromisoformat(ti[k]) for k in ("start_date", "end_date")} for ti in mapped)
    assert a["start_date"] < b["end_date"] and b["start_date"] < a["end_date"], mapped  # the two trials overlapped
    timings["tuning_study_s"] = round(time.monotonic() - t2, 1)

    timings["test_s"] = round(time.monotonic() - t0, 1)
    record = OUTPUT / "deploy_lifecycle.json"
    record.write_text(
        json.dumps(
            {**(json.loads(record.read_text()) if record.exists() else {}), **timings, "version": version}, indent=2
        )
    )
    print(json.dumps(timings))


def test_a_cleared_task_and_two_runs_of_one_date(deployment):
    """Under the real scheduler: clearing only ``flights.curate`` of a finished run reruns it on its own (its
    staging copy is gone: it takes the landing drop with the bytes extract reported); two runs of one data date
    at once (a scheduled one and a manual one with the ``date`` param) both succeed, the partition whole."""
    from include.mlops.simulate.upstream import Upstream, day_table

    dep = deployment
    lake = dep.lake
    last = next(r for r in dep.runs("ingest_flights") if r["logical_date"].startswith(LAST_DATE))
    folder = f"curated/flights/date={LAST_DATE}"
    before = lake.read_bytes(folder, "part-00000.parquet")
    tries = dep.task_instances("ingest_flights", last["dag_run_id"])["flights.curate"]["try_number"]
    r = dep.api(
        "POST",
        "/api/v2/dags/ingest_flights/clearTaskInstances",
        json={
            "dry_run": False,
            "only_failed": False,
            "task_ids": ["flights.curate"],
            "dag_run_id": last["dag_run_id"],
            "include_downstream": False,
            "reset_dag_runs": True,
        },
    )
    assert r.status_code == 200, r.text

    def rerun_done():
        ti = dep.task_instances("ingest_flights", last["dag_run_id"])["flights.curate"]
        return ti if ti["try_number"] > tries and ti["state"] in TERMINAL else None

    ti = dep.wait_for("the cleared curate to run again", rerun_done, 240)
    assert ti["state"] == "success", ti
    assert lake.read_bytes(folder, "part-00000.parquet") == before
    others = dep.task_instances("ingest_flights", last["dag_run_id"])
    assert others["flights.extract"]["try_number"] == 1  # only the cleared task ran again

    day = "2013-01-21"
    Upstream(lake).publish_day(day)
    runs = [
        dep.trigger("ingest_flights", f"{day}T00:00:00Z")["dag_run_id"],
        dep.trigger("ingest_flights", None, {"date": day})["dag_run_id"],
    ]
    states = dep.wait_for("two runs of one date", lambda: _all_finished(dep, "ingest_flights", runs), 420)
    assert set(states.values()) == {"success"}, states
    df = lake.read_parquet(f"curated/flights/date={day}", "part-00000.parquet")
    assert len(df) == len(day_table("flights", day)) and lake.ls(f"curated/flights/date={day}") == [
        "part-00000.parquet"
    ]
    assert not lake.ls("staging", "flights") and not lake.ls("staging", "weather")


# the web UI in a real browser (same deployment, after the lifecycle) ------------------------------------------
def _login(page, dep) -> None:
    from playwright.sync_api import expect

    page.goto(dep.url + "/")
    expect(page.get_by_text("Sign into Airflow")).to_be_visible()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("admin")  # no default password: refused
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(re.compile("invalid|incorrect|wrong", re.I)).first).to_be_visible()
    assert "/auth/login" in page.url
    page.get_by_label("Password").fill(dep.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))


def test_ui_login_dags_and_trigger_form(page, deployment):
    from playwright.sync_api import expect

    dep = deployment
    _login(page, dep)

    # every DAG of dags/ is listed
    page.goto(dep.url + "/dags")
    for dag_id in sorted(ALL_DAGS):
        expect(page.get_by_role("link", name=dag_id, exact=True)).to_be_visible()
    page.screenshot(path=str(OUTPUT / "ui_dags.png"))

    # train_model's trigger form, with its Params
    before = {r["dag_run_id"] for r in dep.runs("train_model")}
    page.goto(dep.url + "/dags/train_model")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Trigger Dag - train_model")).to_be_visible()
    expect(form.get_by_text("Run Parameters")).to_be_visible()
    for label in (
        "Window (days)",
        "End date",
        "Minimum curated days",
        "Horovod workers",
        "Hosts",
        "Boosting rounds",
        "Job timeout (minutes)",
        "Reason",
        "Gate: AUC floor",
    ):
        expect(_field(form, label)).to_be_attached()
    # a small run: one worker, few rounds, a reason people can find again
    _fill(form, "Horovod workers", "1")
    _fill(form, "Boosting rounds", "20")
    _fill(form, "Reason", "browser test")
    _field(form, "Window (days)").scroll_into_view_if_needed()
    page.screenshot(path=str(OUTPUT / "ui_trigger_form.png"))
    form.get_by_role("button", name="Trigger", exact=True).click()

    def new_run():
        runs = [r for r in dep.runs("train_model") if r["dag_run_id"] not in before]
        return runs[0] if runs else None

    run = dep.wait_for("the run triggered from the form", new_run, 60, every_s=1)
    assert run["run_type"] == "manual", run
    assert run["conf"]["reason"] == "browser test" and int(run["conf"]["workers"]) == 1, run["conf"]
    assert int(run["conf"]["num_boost_round"]) == 20 and int(run["conf"]["window_days"]) == 28, run["conf"]
    # that run is not needed further: pause the DAG so it takes no machine time from the rest of the suite
    dep.api("PATCH", "/api/v2/dags/train_model", json={"is_paused": True})


@pytest.fixture
def champion(deployment) -> dict:
    """The deployment's champion: the one the lifecycle test promoted, or (when this test runs without it) a
    first model made here the way train_model makes it: curated days, a Horovod job, register, gate, alias."""
    dep = deployment
    current = dep.registry()["champion"]
    if current:
        return current
    return dep.python(
        "import json, sys\n"
        "sys.path.insert(0, 'tests/helpers')\n"
        "from curation import curate_days\n"
        "from include.mlops.core import registry\n"
        "from include.mlops.core.config import Settings\n"
        "from include.mlops.core.lake import Lake\n"
        "from include.mlops.evaluate import gate\n"
        "from include.mlops.train import pipeline\n"
        "lake = Lake(Settings.from_env().lake_url)\n"
        f"curate_days(lake, {FIRST_DATES[0]!r}, 4)\n"
        f"pipeline.build_training_set(lake, 'ui-champion', 4, 1, end={LAST_DATE!r})\n"
        "pipeline.train(lake, 'ui-champion', 1, num_boost_round=20)\n"
        "v = pipeline.register(lake, 'ui-champion', params={'num_boost_round': 20}, reason='ui test')['version']\n"
        "assert gate.run(lake, 'ui-champion', {'min_auc': 0.5, 'max_ece': 1.0})['passed']\n"
        "registry.set_alias('champion', v)\n"
        "print(json.dumps(registry.alias_version('champion')))"
    )


def test_ui_model_state_page_shows_the_champion(page, deployment, champion):
    from playwright.sync_api import expect

    dep = deployment
    _login(page, dep)
    # the UI plugin's page, in the UI's navigation and inside its frame
    page.goto(dep.url + "/dags")
    page.get_by_role("link", name="Model state").click()
    frame = page.frame_locator("iframe")
    expect(frame.get_by_text("Model state: flight_delay")).to_be_visible(timeout=120_000)
    expect(frame.locator("#champion")).to_contain_text(f"v{champion['version']}")
    expect(frame.locator("#versions")).to_contain_text("champion")
    expect(frame.locator("#gate-verdict")).to_contain_text("PASSED")
    expect(frame.locator("#drift")).to_be_visible()
    time.sleep(0.5)
    page.screenshot(path=str(OUTPUT / "ui_model_state.png"))


def _field(form, label: str):
    """The input of a Param row: each row is a group whose text starts with the Param's title."""
    return (
        form.get_by_role("group").filter(has_text=re.compile("^" + re.escape(label))).locator("input, textarea").first
    )


def _fill(form, label: str, value: str) -> None:
    box = _field(form, label)
    box.scroll_into_view_if_needed()
    box.fill(value)
    box.press("Tab")
