"""The upstream simulator as a whole (simulate_upstream's logic, without Airflow): the plan of a range with its
faults, the params it refuses (naming the param and value), the traffic sent before the drops, the token."""

import threading

import pytest

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.ingest.landing import drop_ready
from include.mlops.simulate import simulator
from include.mlops.simulate.plan import FAULTS, BadParam, Day, plan, replayed
from include.mlops.simulate.simulator import Service, TrafficFailed, simulate_day
from include.mlops.simulate.upstream import Upstream, day_table


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def test_a_range_with_a_fault_on_chosen_days():
    p = plan("2013-03-30", "2013-04-02", "duplicates", ["2013-03-31", "2013-04-02"], "weather", True)
    assert [(d.date, d.fault) for d in p.days] == [
        ("2013-03-30", None),
        ("2013-03-31", "duplicates"),
        ("2013-04-01", None),
        ("2013-04-02", "duplicates"),
    ]
    assert p.fault_dataset == "weather" and p.replay is True
    assert [d.date for d in p.faulty] == ["2013-03-31", "2013-04-02"]


def test_one_day_without_an_end_and_the_whole_year():
    assert [d.as_dict() for d in plan("2013-05-05").days] == [{"date": "2013-05-05", "fault": None}]
    assert len(plan("2013-01-01", "2013-12-30").days) == 364  # the weather ends on 30 December
    assert plan("2013-02-01", "", "", []).days == [Day("2013-02-01")]  # the form's empty fields
    assert [d.date for d in plan("2013-02-01", "2013-02-03", "late", "2013-02-01, 2013-02-03").faulty] == [
        "2013-02-01",
        "2013-02-03",
    ]  # days as text, as a form may send them


def test_every_fault_the_plan_offers_is_one_the_upstream_drops(lake):
    assert "late" in FAULTS and "wrong_types" in FAULTS
    for kind in FAULTS:
        drop = Upstream(lake).publish("2013-01-02", "flights", fault=kind, delay_s=0)
        drop.wait()
        assert drop.fault == kind and lake.exists(layout.landing("flights", "2013-01-02"), layout.SUCCESS)


@pytest.mark.parametrize(
    "kwargs, param, value, words",
    [
        (
            {"start_date": "2013-03-10", "end_date": "2013-03-09"},
            "end_date",
            "2013-03-09",
            "before start_date 2013-03-10",
        ),
        ({"start_date": "2012-12-31"}, "start_date", "2012-12-31", "outside the source data"),
        ({"start_date": "2013-12-30", "end_date": "2014-01-02"}, "end_date", "2014-01-02", "2013-01-01 .. 2013-12-30"),
        ({"start_date": "2013-12-31"}, "start_date", "2013-12-31", "outside the source data"),  # no weather that day
        ({"start_date": "2013-02-30"}, "start_date", "2013-02-30", "not a date"),
        ({"start_date": "2013-02-03garbage"}, "start_date", "2013-02-03garbage", "not a date"),
        ({"start_date": None}, "start_date", None, "not a date"),
        (
            {"start_date": "2013-02-03", "fault": "gremlins", "fault_days": ["2013-02-03"]},
            "fault",
            "gremlins",
            "one of late, unavailable",
        ),
        ({"start_date": "2013-02-03", "fault": "late"}, "fault_days", [], "choose the days"),
        ({"start_date": "2013-02-03", "fault_days": ["2013-02-03"]}, "fault_days", ["2013-02-03"], "no fault is set"),
        (
            {"start_date": "2013-02-03", "end_date": "2013-02-05", "fault": "empty", "fault_days": ["2013-02-06"]},
            "fault_days",
            ["2013-02-06"],
            "outside the range 2013-02-03 .. 2013-02-05",
        ),
        (
            {"start_date": "2013-02-03", "fault": "empty", "fault_days": ["2014-02-03"]},
            "fault_days",
            "2014-02-03",
            "outside the source data",
        ),
        ({"start_date": "2013-02-03", "fault_dataset": "airports"}, "fault_dataset", "airports", "weather, flights"),
    ],
)
def test_bad_params_are_refused_naming_the_param_and_value(kwargs, param, value, words):
    with pytest.raises(BadParam) as err:
        plan(**kwargs)
    assert err.value.param == param and err.value.value == value
    assert str(err.value).startswith(f"param {param!r} = {value!r}: ") and words in str(err.value), str(err.value)


def test_the_service_and_its_token_come_from_the_environment():
    assert Service.from_env({}) == Service(None, {})
    s = Service.from_env({"MLOPS_SERVE_URL": "http://h:8000/", "MLOPS_SERVE_TOKEN": "s3cret"})
    assert s.url == "http://h:8000" and s.headers == {"authorization": "Bearer s3cret"}
    assert Service.from_env({"MLOPS_SERVE_URL": "http://h:8000", "MLOPS_SERVE_TOKEN": ""}).headers == {}


def test_a_day_without_traffic_publishes_the_drops_with_the_fault(lake):
    out = simulate_day(Day("2013-01-09", "duplicates"), lake, "flights", replay=True, service=Service(None))
    assert out["traffic"]["sent"] == 0 and "MLOPS_SERVE_URL is not set" in out["traffic"]["skipped"]
    assert {d["dataset"]: d["fault"] for d in out["drops"]} == {"weather": None, "flights": "duplicates"}
    flights = lake.read_bytes(layout.landing("flights", "2013-01-09"), "flights.csv").decode().splitlines()
    assert len(flights) - 1 > len(day_table("flights", "2013-01-09"))  # duplicated rows in the drop
    assert drop_ready(lake, "flights", "2013-01-09") and drop_ready(lake, "weather", "2013-01-09")


def test_a_late_drop_is_complete_when_the_day_is_done(lake):
    simulate_day(Day("2013-01-10", "late"), lake, "weather", delay_s=0.3)
    assert drop_ready(lake, "weather", "2013-01-10")


class FakeService:
    """A prediction service stand-in: /health, and /predict answering every flight, recording each request's
    Authorization header and when it came (against the drops: traffic must come first)."""

    def __init__(self, lake, model=True, status=200):
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse

        self.auth, self.flights, self.drops_seen = [], 0, []
        self.lock = threading.Lock()
        app = FastAPI()

        @app.get("/health")
        def health(request: Request):
            self.health_auth = request.headers.get("authorization")  # the last one: serve() probes it first
            return {"status": "ok" if model else "no_model"}

        @app.post("/predict/batch")
        async def predict(request: Request):
            body = await request.json()
            with self.lock:
                self.auth.append(request.headers.get("authorization"))
                self.flights += len(body["flights"])
                self.drops_seen.append(lake.exists(layout.landing("flights", "2013-01-11")))
            if status != 200:
                return JSONResponse({"detail": "no"}, status_code=status)
            return {"predictions": [{"arm": "champion"} for _ in body["flights"]]}

        self.app = app


def test_traffic_goes_first_with_the_token(lake):
    from servers import serve

    fake = FakeService(lake)
    with serve(fake.app) as url:
        out = simulate_day(Day("2013-01-11"), lake, replay=True, service=Service(url, {"Authorization": "Bearer t0k"}))
    n = len(day_table("flights", "2013-01-11"))
    assert out["traffic"]["sent"] == n == fake.flights and out["traffic"]["arms"] == {"champion": n}
    assert set(fake.auth) == {"Bearer t0k"} == {fake.health_auth}
    assert not any(fake.drops_seen)  # every request before the drop
    assert drop_ready(lake, "flights", "2013-01-11")


def test_no_traffic_while_the_service_has_no_model(lake):
    from servers import serve

    fake = FakeService(lake, model=False)
    with serve(fake.app) as url:
        out = simulate_day(Day("2013-01-11"), lake, replay=True, service=Service(url))
    assert fake.flights == 0 and "no model deployed" in out["traffic"]["skipped"]
    assert drop_ready(lake, "flights", "2013-01-11")


def test_refused_requests_fail_the_day_before_anything_is_published(lake):
    from servers import serve

    fake = FakeService(lake, status=401)
    with serve(fake.app) as url, pytest.raises(TrafficFailed, match="prediction request"):
        simulate_day(Day("2013-01-11"), lake, replay=True, service=Service(url))
    assert not lake.exists(layout.landing("flights", "2013-01-11"))


def test_no_traffic_while_the_service_does_not_answer(lake):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    out = simulate_day(Day("2013-01-12"), lake, replay=True, service=Service(url))
    assert out["traffic"]["sent"] == 0 and "does not answer (ConnectError)" in out["traffic"]["skipped"]
    assert drop_ready(lake, "flights", "2013-01-12")


# the replay under the scheduler: when a day's turn comes -----------------------------------------------------------
def _ingest(lake, date, table, outcome):
    if outcome == "curated":
        lake.write_bytes(b"parquet", *layout.curated_file(table, date))
    else:
        lake.write_json({"success": False}, layout.quarantine(table, date), layout.QUARANTINE_REPORT)


IDLE = {dag_id: {} for dag_id in simulator.replay_runs_counted()}


def test_a_replay_day_waits_for_the_day_before_to_be_ingested(lake):
    assert simulator.replay_waits(lake, "2013-01-01", "2013-01-01", IDLE) == []  # the first day waits for nothing
    waits = simulator.replay_waits(lake, "2013-01-02", "2013-01-01", IDLE)
    assert waits == ["ingestion of 2013-01-01 (weather, flights neither curated nor quarantined)"]
    _ingest(lake, "2013-01-01", "weather", "curated")
    assert simulator.replay_waits(lake, "2013-01-02", "2013-01-01", IDLE) == [
        "ingestion of 2013-01-01 (flights neither curated nor quarantined)"
    ]
    _ingest(lake, "2013-01-01", "flights", "quarantined")  # a rejected day is done too: it is not dropped again
    assert simulator.replay_waits(lake, "2013-01-02", "2013-01-01", IDLE) == []
    # a replay that starts later does not wait for a day before its window
    assert simulator.replay_waits(lake, "2013-03-01", "2013-03-01", IDLE) == []
    assert simulator.replay_waits(lake, "2013-03-02", "2013-03-01", IDLE) != []


def test_a_replay_day_waits_while_training_or_monitoring_is_in_flight(lake):
    for table in replayed().datasets:
        _ingest(lake, "2013-01-04", table, "curated")
    go = simulator.replay_waits
    assert go(lake, "2013-01-05", "2013-01-01", IDLE) == []
    assert go(lake, "2013-01-05", "2013-01-01", IDLE | {"train_model": {"queued": 1}}) == ["train_model: 1 queued"]
    assert go(lake, "2013-01-05", "2013-01-01", IDLE | {"train_model": {"running": 1}}) == ["train_model: 1 running"]
    assert go(lake, "2013-01-05", "2013-01-01", IDLE | {"monitor_model": {"queued": 1, "running": 1}}) == [
        "monitor_model: 1 queued, 1 running"
    ]
    # a deployment in flight (a first model being promoted, a canary being started) holds the day; while a canary
    # runs, its deploy_model run waits for the very traffic the next days bring, so it does not (nor one queued
    # behind it)
    assert go(lake, "2013-01-05", "2013-01-01", IDLE | {"deploy_model": {"queued": 1}}) == ["deploy_model: 1 queued"]
    assert go(lake, "2013-01-05", "2013-01-01", IDLE | {"deploy_model": {"running": 1}}) == ["deploy_model: 1 running"]
    busy = IDLE | {"deploy_model": {"queued": 1, "running": 1}}
    canary = {"version": "2", "status": "canary", "data_date": "2013-01-04", "from_date": "2013-01-05"}
    assert go(lake, "2013-01-05", "2013-01-01", busy, canary) == []
    assert go(lake, "2013-01-05", "2013-01-01", busy | {"train_model": {"running": 1}}, canary) == [
        "train_model: 1 running"
    ]


def test_once_a_model_serves_a_replay_day_waits_for_the_day_before_to_be_monitored(lake):
    """Monitoring starts from the day's Asset events a moment after ingestion (the scheduler makes the run): the
    next day waits for its report, else its traffic could run ahead of a retraining that monitoring triggers."""
    for day in ("2013-01-07", "2013-01-08"):
        for table in replayed().datasets:
            _ingest(lake, day, table, "curated")
    v1 = {"version": "1", "status": "promoted", "data_date": "2013-01-07", "from_date": "2013-01-08"}
    # the day the first model was trained on is not monitored by it: no wait
    assert simulator.replay_waits(lake, "2013-01-08", "2013-01-01", IDLE, v1) == []
    assert simulator.replay_waits(lake, "2013-01-09", "2013-01-01", IDLE, v1) == [
        "monitoring of 2013-01-08 (model v1 serves since 2013-01-08)"
    ]
    lake.write_json({"date": "2013-01-08"}, layout.monitoring("2013-01-08"), layout.MONITORING_REPORT)
    assert simulator.replay_waits(lake, "2013-01-09", "2013-01-01", IDLE, v1) == []
    assert simulator.replay_waits(lake, "2013-01-09", "2013-01-01", IDLE, None) == []  # no model: no monitoring
