"""simulate_upstream end to end with dag.test(): two days published from the form (one with a corrupt flights
drop), then ingest_flights curates the good day and quarantines the bad one; bad params fail naming themselves."""

import pytest

from include.mlops.core import layout
from include.mlops.simulate.upstream import day_table


def files(lake) -> set[str]:
    root = lake.path()
    return {f[len(root) :].lstrip("/") for f in lake.fs.find(root)}


def test_two_days_published_then_ingested_one_curated_one_quarantined(run_dag, lake):
    before = files(lake)
    run = run_dag(
        "simulate_upstream",
        "2013-03-04",
        {
            "start_date": "2013-03-04",
            "end_date": "2013-03-05",
            "fault": "null_keys",
            "fault_days": ["2013-03-05"],
            "replay_traffic": True,
        },
    )  # no MLOPS_SERVE_URL: no traffic
    assert run.state == "success", run
    assert run.tasks["plan"][0] == "success" and run.tasks["publish_day"][0] == "success"
    for day in ("2013-03-04", "2013-03-05"):
        for ds in ("flights", "weather"):
            assert lake.exists(layout.landing(ds, day), layout.SUCCESS), (ds, day)
    written = {p.split("/", 1)[0] for p in files(lake) - before}
    assert written == {"landing"}, written  # nothing but landing/

    good = run_dag("ingest_flights", "2013-03-04")
    assert good.state == "success", good
    assert len(lake.read_parquet(*layout.curated_file("flights", "2013-03-04"))) == len(
        day_table("flights", "2013-03-04")
    )

    bad = run_dag("ingest_flights", "2013-03-05")
    assert bad.state == "failed" and bad.tasks["flights.validate"] == ("failed", 1), bad
    assert lake.exists(layout.quarantine("flights", "2013-03-05"), layout.QUARANTINE_REPORT)
    assert not lake.exists(layout.curated("flights", "2013-03-05"))
    assert bad.tasks["weather.curate"][0] == "success"  # the fault hit the flights drop only


@pytest.mark.parametrize(
    "conf, words",
    [
        ({"start_date": "2013-03-10", "end_date": "2013-03-09"}, "param 'end_date' = '2013-03-09': before start_date"),
        ({"start_date": "2014-03-10"}, "param 'start_date' = '2014-03-10': outside the source data"),
    ],
)
def test_bad_params_fail_the_plan_naming_the_param(run_dag, lake, conf, words, caplog):
    run = run_dag("simulate_upstream", "2013-03-10", conf)
    assert run.state == "failed" and run.tasks["plan"] == ("failed", 1), run  # no retry can mend a param
    assert words in caplog.text
    assert not lake.exists(layout.landing("flights", conf["start_date"]))


def test_an_unknown_fault_is_refused_by_the_form(run_dag):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="fault.*gremlins|gremlins.*fault"):
        run_dag(
            "simulate_upstream",
            "2013-03-11",
            {"start_date": "2013-03-11", "fault": "gremlins", "fault_days": ["2013-03-11"]},
        )


def test_traffic_goes_to_the_service_named_in_the_environment_with_its_token(run_dag, lake, monkeypatch):
    """MLOPS_SERVE_URL and MLOPS_SERVE_TOKEN as a deployment sets them: the day's flights reach the service, with
    the token, before the day's drop; without replay_traffic nothing is sent."""
    from fastapi import FastAPI, Request
    from servers import serve

    seen = {"auth": set(), "flights": 0, "before_drop": True}
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict/batch")
    async def predict(request: Request):
        body = await request.json()
        seen["auth"].add(request.headers.get("authorization"))
        seen["flights"] += len(body["flights"])
        seen["before_drop"] &= not lake.exists(layout.landing("flights", "2013-03-20"))
        return {"predictions": [{"arm": "champion"} for _ in body["flights"]]}

    with serve(app) as url:
        monkeypatch.setenv("MLOPS_SERVE_URL", url)
        monkeypatch.setenv("MLOPS_SERVE_TOKEN", "e2e-token")
        run = run_dag("simulate_upstream", "2013-03-20", {"start_date": "2013-03-20", "replay_traffic": True})
        assert run.state == "success", run
        assert seen == {
            "auth": {"Bearer e2e-token"},
            "flights": len(day_table("flights", "2013-03-20")),
            "before_drop": True,
        }
        quiet = run_dag("simulate_upstream", "2013-03-21", {"start_date": "2013-03-21", "replay_traffic": False})
        assert quiet.state == "success" and seen["flights"] == len(day_table("flights", "2013-03-20"))
    assert lake.exists(layout.landing("flights", "2013-03-21"), layout.SUCCESS)
