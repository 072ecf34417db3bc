"""The closed loop under Airflow's own scheduler, on the production-shaped deployment (PostgreSQL; scheduler,
dag-processor, triggerer, api-server and the prediction service as separate processes; the service's token on).

Nothing drives the days but the scheduler: with the replay settings (``MLOPS_REPLAY``, a 2013 window, catch-up)
``simulate_upstream`` runs on the daily schedule, each day sending its flights to the service before it drops
them; ``ingest_flights`` and ``monitor_model`` follow on their schedules, the Assets and triggers start
``train_model`` and ``deploy_model``. The thresholds are set (``MLOPS_CONFIG_DIR``) to force one drift trigger:
the first model is trained on the first week and promoted, monitoring fires on the second consecutive day of
drift, the retrained version passes a lenient gate and is rolled out on a two-stage ramp (a day in the shadow,
raised on its signals to every flight), and is promoted or rolled back on its evidence; monitoring is held
while it runs, then by the cool-down.

The test only unpauses the DAGs, waits for the window to be done, and then asserts from the REST API and the
lake alone. Its timeline goes to ``test-output/replay_timeline.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from deploy_support import OUTPUT, ROOT

pytestmark = pytest.mark.timeout(2700)

# the first model on day 7, drift two days running fires on day 10, the rollout: day 11 in the shadow, day 12 at
# half the flights, day 13 at every flight when the comparison of days 11 and 12 says promote; day 14 shows
# monitoring held by the cool-down alone (a longer window only repeats that, at about 27 s a day)
START, END = "2013-01-01", "2013-01-14"
DAYS = [(dt.date(2013, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(14)]
DAGS = ("simulate_upstream", "ingest_flights", "monitor_model", "train_model", "deploy_model")
FIRST_MODEL_DAYS = 7
STAGES = [
    {"share": 0.0, "min_hours": 0, "min_requests": 5},
    {"share": 0.5, "min_hours": 0, "min_requests": 5},
    {"share": 1.0, "min_hours": 0, "min_requests": 5},
]


def _edit(path: Path, **changes) -> None:
    values = yaml.safe_load(path.read_text())
    for k, v in changes.items():
        values[k] = v | values[k] if isinstance(v, dict) and isinstance(values.get(k), dict) else v
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def deployment_settings(home: Path) -> dict[str, str]:
    """The replay's settings (the conftest's ``deployment`` fixture adds them) and its forced thresholds."""
    cfg = home / "config"
    shutil.copytree(ROOT / "include" / "config", cfg)
    # drift: one numeric feature whose trailing week differs from the reference by a KS distance of 0.01 is
    # enough, two days running; then a cool-down longer than the window, so that it fires exactly once
    _edit(
        cfg / "monitoring.yaml",
        window_days=7,
        numeric={"ks": 0.01},
        min_drifted_features=1,
        consecutive_days=2,
        cooldown_days=60,
        min_labelled=100000,  # no decay judged: drift alone triggers
    )
    # a gate any sane retrained model passes (the test is about the loop, the gate's rules have their own tests)
    _edit(cfg / "gate.yaml", min_auc=0.55, max_auc_drop=0.2, max_ece=0.3, max_slice_auc_drop=0.3)
    # a rollout decided within three days of traffic: a day in the shadow, then half the flights (raised on the
    # service's signals), then every flight once the paired comparison says promote; the evidence cap is reached
    # with the second day's outcomes, so an inconclusive comparison ends there
    limits = yaml.safe_load((cfg / "deploy.yaml").read_text())["limits"] | {"min_rescored": 50}
    _edit(cfg / "deploy.yaml", stages=STAGES, limits=limits, min_labelled=400, max_labelled=1500)
    _edit(cfg / "schedule.yaml", replay_poke_s=2)
    return {
        "MLOPS_CONFIG_DIR": str(cfg),
        "MLOPS_REPLAY": "true",
        "MLOPS_START_DATE": START,
        "MLOPS_END_DATE": END,
        "MLOPS_CATCHUP": "true",
        "MLOPS_TRAIN_MIN_DAYS": str(FIRST_MODEL_DAYS),
        "MLOPS_SENSOR_POKE_S": "2",
        "MLOPS_SENSOR_TIMEOUT_S": "3600",  # ingestion runs ahead of the replay wait for their drops
        "MLOPS_DEPLOY_POKE_S": "5",
    }


def _runs(dep, dag_id: str) -> list[dict]:
    out, offset = [], 0
    while True:
        page = dep.get(
            f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "offset": offset, "order_by": "run_after"}
        )
        out += page["dag_runs"]
        offset += len(page["dag_runs"])
        if not page["dag_runs"] or offset >= page["total_entries"]:
            return out


def _xcom(dep, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    r = dep.api(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/{key}",
        params={"deserialize": "true"},
    )
    return r.json().get("value") if r.status_code == 200 else None


def _day(run: dict) -> str:
    return run["logical_date"][:10]


def _done(dep) -> dict | None:
    """Every day of the window published and ingested, and no run of any DAG queued or running."""
    runs = {d: _runs(dep, d) for d in DAGS}
    published = [r for r in runs["simulate_upstream"] if r["state"] == "success"]
    ingested = [r for r in runs["ingest_flights"] if r["state"] in ("success", "failed")]
    active = {d: [r["dag_run_id"] for r in rs if r["state"] not in ("success", "failed")] for d, rs in runs.items()}
    failed = {d: [r["dag_run_id"] for r in rs if r["state"] == "failed"] for d, rs in runs.items()}
    if any(failed.values()):  # a failed run: no need to wait for the rest
        return {"failed": failed, "active": active}
    if len(published) < len(DAYS) or len(ingested) < len(DAYS) or any(active.values()):
        return None
    return {"failed": failed, "active": active}


def test_the_closed_loop_runs_under_the_scheduler(deployment):
    dep = deployment
    t0 = time.monotonic()
    dep.wait_for(
        "every DAG to be parsed",
        lambda: set(DAGS) <= {d["dag_id"] for d in dep.get("/api/v2/dags", params={"limit": 100})["dags"]},
        180,
    )
    assert dep.get("/api/v2/importErrors")["total_entries"] == 0
    sim = dep.get("/api/v2/dags/simulate_upstream/details")
    assert sim["timetable_summary"] in ("0 0 * * *", "@daily") and sim["catchup"] is True, sim
    # nothing but unpausing: the scheduler starts the replay
    for dag_id in DAGS:
        r = dep.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        assert r.status_code == 200 and r.json()["is_paused"] is False, r.text

    end = dep.wait_for("the replay of the window", lambda: _done(dep), 2400, every_s=10)
    replay_s = round(time.monotonic() - t0, 1)
    runs = {d: _runs(dep, d) for d in DAGS}
    assert not any(end["failed"].values()), end  # no run failed ...
    assert not any(end["active"].values()), end  # ... and none is stuck

    # the days ran in order, one at a time, each on its own schedule
    sim_runs = sorted(runs["simulate_upstream"], key=_day)
    assert [_day(r) for r in sim_runs] == DAYS
    assert {r["run_type"] for r in sim_runs} == {"scheduled"}
    for a, b in zip(sim_runs, sim_runs[1:]):
        assert a["end_date"] <= b["start_date"], (a["dag_run_id"], b["dag_run_id"])
    assert sorted(_day(r) for r in runs["ingest_flights"]) == DAYS
    assert {r["run_type"] for r in runs["ingest_flights"]} == {"scheduled"}
    from include.mlops.core import layout

    lake = dep.lake
    for ds in ("flights", "weather"):
        assert [d.isoformat() for d in layout.partitions(lake, "curated", ds)] == DAYS

    # the first model: trained once the first week was curated (Asset), gated, promoted directly
    trained = []
    for run in sorted(runs["train_model"], key=lambda r: r["start_date"]):
        tis = dep.task_instances("train_model", run["dag_run_id"])
        if tis["train"]["state"] == "success":
            gate = _xcom(dep, "train_model", run["dag_run_id"], "evaluation_gate")
            trained.append({"run": run, "gate": gate})
    assert len(trained) == 2, [(t["run"]["dag_run_id"], t["gate"]) for t in trained]
    first, second = trained
    assert first["run"]["run_type"] == "asset_triggered" and first["gate"]["passed"], first
    assert first["gate"]["champion_version"] is None and first["gate"]["data_date"] == DAYS[FIRST_MODEL_DAYS - 1]
    v1 = str(first["gate"]["version"])
    deploys = sorted(runs["deploy_model"], key=lambda r: r["start_date"])
    assert [str(r["conf"]["version"]) for r in deploys] == [v1, str(second["gate"]["version"])], deploys
    d1 = dep.task_instances("deploy_model", deploys[0]["dag_run_id"])
    assert d1["promote_now"]["state"] == "success" and d1["start_canary"]["state"] == "skipped"

    # monitoring: reports from the day after the first model on; drift up, and one trigger
    reports = {
        d: lake.read_json(f"reports/monitoring/date={d}", "report.json")
        for d in DAYS
        if d > first["gate"]["data_date"] and lake.exists(f"reports/monitoring/date={d}", "report.json")
    }
    assert reports, "no monitoring report"
    triggers = lake.read_json("reports/monitoring", "triggers.json")
    assert len(triggers) == 1 and "data drift" in triggers[0]["reason"], triggers
    fired_on = triggers[0]["date"]
    assert reports[fired_on]["signals"]["data_drift"] and reports[fired_on]["champion"] == v1
    run_up = [(dt.date.fromisoformat(fired_on) - dt.timedelta(days=i)).isoformat() for i in range(2)]
    assert all(reports[d]["signals"]["data_drift"] for d in run_up), {d: reports.get(d) for d in run_up}

    # train_model triggered by monitor_model with the drift reason, its gate against the champion
    conf = second["run"]["conf"]
    # triggered by monitor_model's operator (Airflow 3.3 says "operator_triggered"; earlier ones "manual")
    assert second["run"]["run_type"] in ("operator_triggered", "manual"), second["run"]
    assert "data drift" in conf["reason"], conf
    assert conf["end_date"] == fired_on and second["gate"]["passed"], second
    assert str(second["gate"]["champion_version"]) == v1
    v2 = str(second["gate"]["version"])
    fire_runs = [
        r
        for r in runs["monitor_model"]
        if dep.task_instances("monitor_model", r["dag_run_id"]).get("trigger_train_model", {}).get("state") == "success"
    ]
    assert len(fire_runs) == 1

    # the canary: started for the day the drift fired, half of the following days' flights served by v2
    canary_run = deploys[1]
    dtis = dep.task_instances("deploy_model", canary_run["dag_run_id"])
    assert dtis["start_canary"]["state"] == "success" and dtis["promote_now"]["state"] == "skipped", dtis
    history = [lake.read_json("deployments/history", n) for n in sorted(lake.ls("deployments/history"))]
    rollout = next(h for h in history if str(h["version"]) == v2)
    assert rollout["data_date"] == fired_on and rollout["status"] in ("promoted", "rolled_back"), rollout
    evidence = rollout["evidence"]
    assert evidence, rollout
    import pandas as pd

    from include.mlops.core import predictions

    canary_days = [d for d in DAYS if rollout["from_date"] <= d]
    # the ramp under the scheduler: the first day in the shadow (every flight answered by v1 and scored by v2,
    # never returned), the stage raised on its signals, then every flight answered by v2 until the decision
    stages = rollout["history"]
    shares = [h["share"] for h in stages]
    assert len(stages) >= 2 and shares == [0.0, 0.5, 1.0][: len(stages)], stages
    assert stages[0]["outcome"] == "advance" and stages[0]["signals"]["agreement"] == 1.0, stages[0]
    assert stages[-1]["outcome"] in ("promote", "rollback"), stages[-1]
    # each flight by its first answer, given while the canary ran
    served = predictions.predictions(lake, canary_days, since=rollout["started_at"])
    at = pd.to_datetime(served["predicted_at"], utc=True, format="ISO8601")
    during = served[(at <= pd.Timestamp(rollout["finished_at"])).to_numpy()]
    assert set(during["version"].astype(str)) == {v1, v2}, during["version"].value_counts()
    # from the first day after the drift: that day's traffic waited for the retraining and the canary's start
    first_day = predictions.predictions(lake, [rollout["from_date"]])
    assert len(first_day) > 300 and set(first_day["version"].astype(str)) == {v1}, first_day["version"].value_counts()
    shadow = predictions.predictions(lake, [rollout["from_date"]], shadow=True)
    assert set(shadow["version"].astype(str)) == {v2} and len(shadow) == len(first_day), (len(shadow), len(first_day))
    # the raised stage's share, as served (the service follows the rollout within its refresh period)
    entered = pd.Timestamp(stages[1]["entered_at"])
    left = pd.Timestamp(stages[1].get("left_at") or rollout["finished_at"])
    half = during[((at[during.index] > entered) & (at[during.index] <= left)).to_numpy()]
    share = float((half["version"].astype(str) == v2).mean())
    assert len(half) > 300 and 0.35 < share < 0.65, (len(half), share)

    # the decision, with its evidence, and the registry to match
    reg = dep.registry()
    decision = _xcom(dep, "deploy_model", canary_run["dag_run_id"], "decide")
    assert decision and decision["decision"] in ("promote", "rollback"), decision
    if decision["decision"] == "promote":
        assert rollout["status"] == "promoted" and reg["champion"]["version"] == v2
    else:
        assert rollout["status"] == "rolled_back" and reg["champion"]["version"] == v1
    assert reg["challenger"] is None

    # monitoring held back while the canary ran, then by the cool-down; never a second trigger
    held = []
    for r in runs["monitor_model"]:
        d = _xcom(dep, "monitor_model", r["dag_run_id"], "check_thresholds", "decision")
        if d and d.get("held"):
            held.append(d)
    assert any("canary" in d["held"] for d in held), held
    assert any("cool-down" in d["held"] for d in held), held
    assert "canary" not in held[-1]["held"], held  # the canary decided before the window's last day

    # Slack heard every step of the loop (the HTTP stand-in received them)
    texts = dep.slack.texts()
    assert any("Drift on model v" + v1 in t for t in texts), texts
    assert sum("[GATE]" in t and "passed" in t.lower() for t in texts) >= 2, texts
    assert any(f"Canary started: v{v2}" in t for t in texts), texts
    assert any(f"v{v2}" in t and ("promoted" in t.lower() or "rolled back" in t.lower()) for t in texts), texts

    timeline = {
        "window": [START, END],
        "replay_s": replay_s,
        "first_model": {"version": v1, "data_date": first["gate"]["data_date"]},
        "drift_trigger": triggers[0],
        "retrained": {"version": v2, "gate_passed": second["gate"]["passed"]},
        "canary": {k: rollout.get(k) for k in ("from_date", "status")}
        | {"stages": [{k: h.get(k) for k in ("share", "entered_at", "left_at", "outcome", "why")} for h in stages]}
        | {"served_share_at_50": share},
        "decision": decision["decision"],
        "evidence": {k: evidence.get(k) for k in ("rows", "logloss", "auc")},
        "held": [d["held"] for d in held],
        "slack_messages": len(texts),
        "runs": {d: len(rs) for d, rs in runs.items()},
    }
    (OUTPUT / "replay_timeline.json").write_text(json.dumps(timeline, indent=2, default=str))
    print(json.dumps(timeline, indent=2, default=str))
