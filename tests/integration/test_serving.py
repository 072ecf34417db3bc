"""The prediction service over real HTTP (uvicorn in a thread): routing, alias changes under load, logging, 422."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from include.mlops.serve.app import create_app
from include.mlops.serve.models import ModelStore, bucket
from include.mlops.simulate.upstream import day_table


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
    cols = [
        "year",
        "month",
        "day",
        "carrier",
        "flight",
        "origin",
        "dest",
        "sched_dep_time",
        "sched_arr_time",
        "distance",
        "time_hour",
    ]
    return df[cols].to_dict(orient="records")


def test_one_flight_and_a_batch(service):
    url, _, _ = service
    one = flights()[0]
    r = httpx.post(url + "/predict", json=one)
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert p["version"] == "1" and p["arm"] == "champion" and 0 < p["delay_probability"] < 1
    r = httpx.post(url + "/predict/batch", json={"flights": flights()[:20]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 20


@pytest.mark.parametrize(
    "change, field",
    [
        ({"carrier": "united"}, "carrier"),
        ({"month": 13}, "month"),
        ({"distance": "far"}, "distance"),
        ({"time_hour": "yesterday"}, "time_hour"),
        ({"origin": None}, "origin"),
    ],
)
def test_malformed_requests_get_422_naming_the_field(service, change, field):
    url, _, _ = service
    body = flights()[0] | change
    r = httpx.post(url + "/predict", json=body)
    assert r.status_code == 422, r.text
    assert field in r.text
    missing = {k: v for k, v in flights()[0].items() if k != "dest"}
    r = httpx.post(url + "/predict/batch", json={"flights": [missing]})
    assert r.status_code == 422 and "dest" in r.text
    assert (
        httpx.post(url + "/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )


def test_routing_is_stable_by_flight_key(service):
    url, aliases, _ = service
    aliases.challenger = "2"
    time.sleep(0.6)
    batch = flights()[:300]
    first = httpx.post(url + "/predict/batch", json={"flights": batch}).json()["predictions"]
    again = httpx.post(url + "/predict/batch", json={"flights": batch[::-1]}).json()["predictions"][::-1]
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
            aliases.champion, aliases.challenger = ("2", "1") if i % 2 else ("1", "2")
            aliases.share = (0.1, 0.5, 0.0)[i % 3]
            i += 1
            time.sleep(0.15)

    flipper = threading.Thread(target=flip)
    flipper.start()
    until = time.time() + 1.5  # several alias changes (refresh every 0.2 s) while the requests go on

    def client_loop(client):
        out = []
        while time.time() < until or len(out) < 10:
            out.append(client.post(url + "/predict/batch", json={"flights": batch}))
        return out

    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
        responses = [r for rs in pool.map(lambda _: client_loop(client), range(8)) for r in rs]
    stop.set()
    flipper.join()
    assert len(responses) >= 80 and {r.status_code for r in responses} == {200}
    versions = {p["version"] for r in responses for p in r.json()["predictions"]}
    assert versions == {"1", "2"}
    sent = len(responses) * len(batch)
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


def pandas_path(model, rows):
    """The reference: a DataFrame, the event-time columns through pandas, ``FeatureSpec.encode``, predict."""
    import pandas as pd

    df = pd.DataFrame(rows)
    ts = pd.to_datetime(df["time_hour"], utc=True)
    df["event_hour_utc"], df["event_weekday"] = ts.dt.hour, ts.dt.weekday
    return model.predict(df)


def test_predictions_equal_the_pandas_path(service, models):
    """The request path (msgspec, NumPy, no pandas) gives the pandas path's numbers: with the weather and without,
    unseen categories, both arms."""
    import numpy as np

    from include.mlops.serve.request import RequestModel
    from include.mlops.simulate.traffic import requests_for

    url, aliases, _ = service
    rows = requests_for("2013-01-22")[:400]
    rows[0] = rows[0] | {"carrier": "ZZ", "dest": "XYZ"}  # categories the model never saw
    rows[1] = {k: v for k, v in rows[1].items() if k not in ("temp", "wind_gust", "visib")}
    aliases.challenger = "2"
    time.sleep(0.6)
    got = httpx.post(url + "/predict/batch", json={"flights": rows}).json()["predictions"]
    arms = {p["arm"] for p in got}
    assert arms == {"champion", "challenger"}
    for version in ("1", "2"):
        idx = [i for i, p in enumerate(got) if p["version"] == version]
        want = pandas_path(models[version], [rows[i] for i in idx])
        np.testing.assert_array_equal([got[i]["delay_probability"] for i in idx], want)
    one = httpx.post(url + "/predict", json=rows[0]).json()["predictions"][0]
    assert one["delay_probability"] == got[0]["delay_probability"]
    # the matrices themselves are equal, bit for bit
    model = models["1"]
    decoded = RequestModel().decode_batch(json.dumps({"flights": rows}).encode())
    import pandas as pd

    df = pd.DataFrame(rows)
    ts = pd.to_datetime(df["time_hour"], utc=True)
    df["event_hour_utc"], df["event_weekday"] = ts.dt.hour, ts.dt.weekday
    ref = model.spec.encode(df)[model.spec.columns].to_numpy(dtype="float32")
    np.testing.assert_array_equal(model.encoder.encode(decoded), ref)
