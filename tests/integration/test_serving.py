"""The prediction service over real HTTP (uvicorn in a thread): routing, alias changes under load, logging, 422."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from include.mlops.train import features as F
from include.mlops.serve.app import create_app
from include.mlops.serve.models import ModelStore, ServedModel, bucket
from include.mlops.ingest.upstream import day_table
from include.mlops.train import lgbm


@pytest.fixture(scope="module")
def models(curated_lake):
    fl, we, _ = F.load_window(curated_lake, "2013-01-21", 21)
    ts = F.build(fl, we)
    out = {}
    for version, leaves in (("1", 15), ("2", 63)):
        b = lgbm.train_single(ts.part("train"), ts.part("validation"), ts.spec.columns, ts.spec.categorical,
                              lgbm.params({"num_leaves": leaves}, threads=1), 30)
        out[version] = ServedModel(version, b, ts.spec)
    return out


class Aliases:
    def __init__(self):
        self.champion, self.challenger, self.share = "1", None, 0.3

    def __call__(self):
        return {"champion": self.champion, "challenger": self.challenger}, self.share


@pytest.fixture
def service(models, tmp_path):
    from servers import serve

    from include.mlops.core.lake import Lake

    aliases = Aliases()
    store = ModelStore(aliases, lambda v: models[v])
    lake = Lake((tmp_path / "lake").as_uri())
    with serve(create_app(store, lake, refresh_s=0.2, flush_rows=50, flush_s=0.5)) as url:
        yield url, aliases, lake


def flights(date="2013-01-22"):
    df = day_table("flights", date)
    cols = ["year", "month", "day", "carrier", "flight", "origin", "dest", "sched_dep_time", "sched_arr_time",
            "distance", "time_hour"]
    return df[cols].to_dict(orient="records")


def test_one_flight_and_a_batch(service):
    url, _, _ = service
    one = flights()[0]
    r = httpx.post(url + "/predict", json=one)
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert p["version"] == "1" and p["arm"] == "champion" and 0 < p["delay_probability"] < 1
    r = httpx.post(url + "/predict", json={"flights": flights()[:20]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 20


@pytest.mark.parametrize("change, field", [
    ({"carrier": "united"}, "carrier"),
    ({"month": 13}, "month"),
    ({"distance": "far"}, "distance"),
    ({"time_hour": "yesterday"}, "time_hour"),
    ({"origin": None}, "origin"),
])
def test_malformed_requests_get_422_naming_the_field(service, change, field):
    url, _, _ = service
    body = flights()[0] | change
    r = httpx.post(url + "/predict", json=body)
    assert r.status_code == 422, r.text
    assert field in r.text
    missing = {k: v for k, v in flights()[0].items() if k != "dest"}
    r = httpx.post(url + "/predict", json={"flights": [missing]})
    assert r.status_code == 422 and "dest" in r.text
    assert httpx.post(url + "/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422


def test_routing_is_stable_by_flight_key(service):
    url, aliases, _ = service
    aliases.challenger = "2"
    time.sleep(0.6)
    batch = flights()[:300]
    first = httpx.post(url + "/predict", json={"flights": batch}).json()["predictions"]
    again = httpx.post(url + "/predict", json={"flights": batch[::-1]}).json()["predictions"][::-1]
    assert [p["arm"] for p in first] == [p["arm"] for p in again]
    share = sum(p["arm"] == "challenger" for p in first) / len(first)
    assert 0.2 < share < 0.4  # canary share 0.3
    for p in first:
        assert (p["arm"] == "challenger") == (bucket(p["flight_key"]) < 0.3)
        assert p["version"] == ("2" if p["arm"] == "challenger" else "1")


def test_alias_changes_under_concurrent_load_fail_nothing_and_log_everything(service):
    url, aliases, lake = service
    batch = flights()[:25]
    stop = threading.Event()

    def flip():
        i = 0
        while not stop.is_set():
            aliases.champion, aliases.challenger = (("2", "1") if i % 2 else ("1", "2"))
            aliases.share = (0.1, 0.5, 0.0)[i % 3]
            i += 1
            time.sleep(0.15)

    flipper = threading.Thread(target=flip)
    flipper.start()
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.post(url + "/predict", json={"flights": batch}), range(80)))
    stop.set()
    flipper.join()
    assert [r.status_code for r in responses] == [200] * 80
    versions = {p["version"] for r in responses for p in r.json()["predictions"]}
    assert versions == {"1", "2"}
    sent = 80 * len(batch)
    deadline = time.time() + 20
    while time.time() < deadline:
        logged = httpx.get(url + "/health").json()["logged"]
        if logged >= sent:
            break
        time.sleep(0.3)
    import pandas as pd

    parts = [lake.read_parquet("predictions/date=2013-01-22", n) for n in lake.ls("predictions/date=2013-01-22")]
    log = pd.concat(parts)
    ids = {r.json()["request_id"] for r in responses}
    assert len(log) == sent and set(log["request_id"]) == ids
    assert {"flight_key", "score", "version", "arm", "predicted_at", "carrier", "distance"} <= set(log.columns)
