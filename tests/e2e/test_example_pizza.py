"""The whole lifecycle on a second real data set, from its settings folder alone (``examples/pizza/``: gt's
pizzaplace table, one date column, a date as event time, no joined data set, a set-membership label named
``large``, a pizza sold as the entity). No code here but the drops, the runs and the assertions: the upstream
simulator drops the days, the generated ``ingest_pizzas`` DAG ingests them, ``train_model`` trains and gates,
``deploy_model`` promotes the first version (LightGBM) and runs a canary for the second (the baseline kind, chosen
in the form) against a real prediction service answering with the declared fields, and ``monitor_model``
reports."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pizza"
TOKEN = "e2e-pizza-token-0123456789abcdefghijkl"
FIRST = dt.date(2015, 1, 1)


def days(start: dt.date, n: int) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(n)]


@pytest.fixture(scope="module")
def pizza(tmp_path_factory, airflow_db):
    """The example's settings folder, with a home (lake, registry) of its own."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("pizza-home")
    mp.setenv("MLOPS_HOME", str(home))
    mp.setenv("MLOPS_CONFIG_DIR", str(EXAMPLE))
    mp.setenv("MLOPS_START_DATE", FIRST.isoformat())  # the tests' 2013 is the flights'
    for var in ("MLOPS_DATASETS", "MLOPS_EXPECTATIONS_DIR", "MLOPS_PARAMS", "MLOPS_MODEL_NAME"):
        mp.delenv(var, raising=False)
    from include.mlops.core.config import Settings
    from include.mlops.core.lake import Lake

    yield Lake(Settings.from_env().lake_url)
    mp.undo()


def ingest(run_dag, lake, dates: list[str]) -> None:
    """Each day dropped by the upstream simulator, then ingested by its generated DAG."""
    from include.mlops.simulate.upstream import Upstream

    up = Upstream(lake)
    for d in dates:
        up.publish(dt.date.fromisoformat(d), "pizzas")
        run = run_dag("ingest_pizzas", d)
        assert run.state == "success", (d, run)


def test_the_pizza_lifecycle_from_its_settings_folder(pizza, run_dag, slack, monkeypatch):
    from servers import serve

    from include.mlops import kinds
    from include.mlops.core import layout, registry, rollouts
    from include.mlops.serve.app import create_app, registry_store
    from include.mlops.simulate.traffic import replay

    lake = pizza
    # 1. ten days of sales ingested by the DAG the declaration makes; one corrupt drop quarantined
    ingest(run_dag, lake, days(FIRST, 10))
    assert layout.partitions(lake, layout.zone("curated", "pizzas"))[-1] == dt.date(2015, 1, 10)
    curated = lake.read_parquet(*layout.curated_file("pizzas", dt.date(2015, 1, 5)))
    assert {"large", "event_weekday", "is_labelled"} <= set(curated.columns) and "event_hour_utc" not in curated

    # 2. the first model: trained by Horovod workers, gated on its own, registered under the declared name
    run = run_dag("train_large_pizza", "2015-01-10", conf={"reason": "first pizza model"})
    assert run.state == "success", run
    (v1,) = registry.versions()
    assert registry.model_name() == "large_pizza"
    gate = lake.read_json(layout.gate(run.run_id.replace(":", "").replace("+", "")), "decision.json")
    assert gate["passed"] and [c["name"] for c in gate["checks"]] == ["auc_floor", "calibration"], gate
    run = run_dag("deploy_large_pizza", "2015-01-11", conf={"version": v1["version"]})
    assert run.state == "success" and registry.alias_version("champion")["version"] == v1["version"], run

    # 3. the service answers with the declared names
    app = create_app(registry_store(lake), lake, refresh_s=0.3, flush_rows=100, flush_s=0.3, token=TOKEN)
    with serve(app) as url:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        one = {"rownames": 1, "date": "2015-01-01", "name": "hawaiian", "type": "classic"}
        r = httpx.post(url + "/predict", json=one, headers=auth)
        assert r.status_code == 200, r.text
        (answer,) = r.json()["predictions"]
        assert set(answer) >= {"sale", "large_probability", "version"} and answer["sale"] == "2015-01-01/1", answer
        assert "flight_key" not in answer and "delay_probability" not in answer
        r = httpx.post(url + "/predict/batch", json={"pizzas": [one, one | {"rownames": 2}]}, headers=auth)
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2, r.text
        bad = httpx.post(url + "/predict", json=one | {"date": "20150101"}, headers=auth)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "date"

        # 4. a second version of the other kind (the baseline, chosen in the form) on the next days, gated against
        # the LightGBM champion, then its canary decided on the paired comparison, the service scoring both kinds
        ingest(run_dag, lake, days(FIRST + dt.timedelta(days=10), 4))
        run = run_dag("train_large_pizza", "2015-01-14", conf={"reason": "second pizza model", "kind": "baseline"})
        assert run.state == "success", run
        v2 = registry.versions()[-1]["version"]
        assert v2 != v1["version"]
        assert kinds.load_version(v2).kind == "baseline" and kinds.load_version(v1["version"]).kind == "lightgbm"
        import mlflow

        tracked = mlflow.get_run(registry.versions()[-1]["run_id"]).data
        assert tracked.params["kind"] == "baseline" and tracked.params["l2"] == "1.0"
        canary_days = days(FIRST + dt.timedelta(days=14), 4)
        errors: list[str] = []
        served: list[tuple[float, float]] = []  # per canary day: the challenger's share before and after serving it

        def traffic():
            """A day of sales at a time: served over HTTP, then its outcomes ingested; while the rollout runs, the
            next day once it moved (a stage raised, or the end)."""
            from curation import curate_days

            try:
                deadline = time.time() + 120
                while not (
                    (r := rollouts.current(lake))
                    and r["status"] == "canary"
                    and httpx.get(url + "/health").json()["challenger"] == v2
                ):
                    assert time.time() < deadline, "the canary never went live"
                    time.sleep(0.3)
                for d in canary_days:  # every day served and curated, the rollout running or not
                    r = rollouts.current(lake)
                    deadline = time.time() + 10
                    while (
                        r["status"] == "canary"
                        and httpx.get(url + "/health").json()["canary_share"] != r["canary_share"]
                    ):
                        assert time.time() < deadline, "the service did not follow the stage's share"
                        time.sleep(0.2)
                    before = httpx.get(url + "/health").json()["canary_share"]
                    result = replay(d, url, concurrency=2, token=TOKEN)
                    assert result.errors == 0 and result.flights > 0, result
                    served.append((before, httpx.get(url + "/health").json()["canary_share"]))
                    time.sleep(1.5)  # the service flushes its prediction log
                    curate_days(lake, d, 1)
                    deadline = time.time() + 60
                    while (now := rollouts.current(lake))["status"] == "canary" and now["stage"] == r["stage"]:
                        if time.time() > deadline:
                            break
                        time.sleep(0.3)
            except BaseException as exc:  # noqa: BLE001 - asserted in the test's thread
                errors.append(f"{type(exc).__name__}: {exc}")

        monkeypatch.setenv("MLOPS_SERVE_URL", url)  # the ramp's signals: the service's /metrics
        monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)
        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        run = run_dag(
            "deploy_large_pizza", canary_days[-1], conf={"version": v2, "date": "2015-01-14", "wait_hours": 0.1}
        )
        t.join(300)
        assert not errors, errors
        assert run.state == "success", run
        # the model's places are in its own folder (the declaration's default lake: models/<name>)
        assert layout.canary_evidence(v2) == ("models/large_pizza/reports/deployments", f"v{v2}.json")
        evidence = lake.read_json(*layout.canary_evidence(v2))
        assert evidence["decision"] in ("promote", "rollback"), evidence
        # the ramp: the shadow first; past it, both arms served flights
        history = lake.read_json(*layout.rollout())["history"]
        assert history[0]["share"] == 0.0 and history[0]["outcome"] in ("advance", "rollback"), history
        # the arms in the evidence are those that served its days (under load a day may be served before the
        # service follows a raised stage: its flights are the champion's alone)
        shares = served[: evidence["days"]]
        arms = set(evidence["live_auc_by_arm"])
        assert "champion" in arms and arms <= {"champion", "challenger"}, evidence
        if any(before > 0 for before, _ in shares):
            assert "challenger" in arms, (served, evidence)
        if all(before == after == 0 for before, after in shares):
            assert arms == {"champion"}, (served, evidence)
        assert evidence["rows"] >= 200, evidence  # min_labelled: 200
        assert "no decision after" not in evidence["why"], evidence  # decided on evidence, not a timeout
        champion = registry.alias_version("champion")["version"]
        assert champion == (v2 if evidence["decision"] == "promote" else v1["version"])

    # 5. monitoring reports on the pizzas' days
    run = run_dag("monitor_large_pizza", canary_days[-1])
    assert run.state == "success" and run.tasks["report"][0] == "success", run
    report = lake.read_json(layout.monitoring(canary_days[-1]), layout.MONITORING_REPORT)
    assert {f["feature"] for f in report["features"]} == {"event_weekday", "name", "type"}  # the pizzas' features
    assert report["days"] >= 4 and [d["date"] for d in report["performance"]["daily"]][-1] == canary_days[-1]
    # the data sets' zones and the model's folder, nothing of the model's at the root
    assert set(lake.ls()) - {"landing", "staging", "curated", "quarantine"} == {"models"}, lake.ls()
    assert set(lake.ls("models", "large_pizza")) == {"training", "predictions", "reports", "deployments", "audit"}
    from include.mlops.core import audit

    events = [r["event"] for r in audit.history(lake)]  # the pizza model's own trail, chained
    assert events[:3] == ["registered", "gate_passed", "promoted"] and "canary_started" in events, events
    assert audit.verify(lake)["ok"] and lake.ls("models", "large_pizza", "audit") == ["large_pizza"]
