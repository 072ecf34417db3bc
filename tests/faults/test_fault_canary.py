"""Clients cannot steer the canary: a request dated far in the future does not move its evidence window, and
re-posting a flight with altered features does not change the evidence. Real service, real registry, real
prediction log, outcomes from real ingestion."""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest
from curation import curate_days
from tiny_models import tiny_version

from include.mlops.core import layout, predictions, registry, rollouts
from include.mlops.core.lake import Lake
from include.mlops.deploy import canary
from include.mlops.simulate.traffic import requests_for

DAY = "2013-01-03"  # the canary's flights
STARTED_ON = "2013-01-02"  # the data date of the run that started it
# a rollout at a stage serving half the flights (its canary_share)
STAGES = [{"share": 0.5, "min_hours": 0, "min_requests": 0}, {"share": 1.0, "min_hours": 0, "min_requests": 0}]


@pytest.fixture
def live_canary(tmp_path, monkeypatch):
    """Champion v1 and challenger v2 on half the flights, behind a real service over a lake of this test's."""
    from servers import serve

    from include.mlops.serve.app import create_app, registry_store

    monkeypatch.setenv("MLOPS_MODEL_NAME", f"canary_fault_{tmp_path.name[-8:]}")
    champion, challenger = tiny_version(tmp_path, seed=1), tiny_version(tmp_path, seed=2)
    registry.set_alias("champion", champion)
    registry.set_alias("challenger", challenger)
    lake = Lake((tmp_path / "lake").as_uri())
    rollout = canary.start(lake, challenger, champion, STAGES, STARTED_ON)
    with serve(create_app(registry_store(lake), lake, refresh_s=0.2, flush_rows=100, flush_s=0.2)) as url:
        deadline = time.time() + 10
        while httpx.get(url + "/health").json()["canary_share"] != 0.5 and time.time() < deadline:
            time.sleep(0.1)
        yield url, lake, rollout


def _post(url, flights):
    with httpx.Client(base_url=url, timeout=60) as c:
        for i in range(0, len(flights), 100):
            r = c.post("/predict/batch", json={"flights": flights[i : i + 100]})
            assert r.status_code == 200, r.text[:300]


def _log(lake) -> pd.DataFrame:
    """Every record of the prediction log, every date: the served answers and the challenger's shadow scores."""
    parts = [
        lake.read_parquet(f"predictions/{d}", f) for d in lake.ls("predictions") for f in lake.ls(f"predictions/{d}")
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["arm"])


def _served(lake) -> int:
    return int((_log(lake)["arm"] != predictions.SHADOW).sum())


def _flushed(url, lake, n):
    """``n`` served answers in the lake (the service's ``logged`` also counts the shadow's records)."""
    deadline = time.time() + 20
    while _served(lake) < n and time.time() < deadline:
        time.sleep(0.2)
    assert _served(lake) >= n


def test_a_client_cannot_steer_the_canary(live_canary):
    """Kills: the evidence window taken from the newest prediction partition (a request dated 2100 made the
    canary wait until its sensor timed out); the latest logged row per flight used as evidence (a re-post with
    altered features changed it)."""
    url, lake, rollout = live_canary
    assert rollout["from_date"] == DAY  # from the run's data date, not from clients
    flights = requests_for(DAY)
    _post(url, flights)
    future = dict(flights[0], year=2099, month=12, day=31, time_hour="2099-12-31T15:00:00Z")
    _post(url, [future])
    _flushed(url, lake, len(flights) + 1)
    assert "date=2099-12-31" in lake.ls("predictions")
    curate_days(lake, DAY, 1)  # the outcomes arrive with the day's ingestion

    before = canary.labelled_predictions(lake, rollouts.current(lake))
    ev = canary.evidence(before, canary.DeployConfig(min_labelled=100, min_days=1))  # one day here
    assert ev["ready"] and ev["labelled"] == sum(ev["by_arm"].values()) == len(before) > 0.9 * len(flights)
    assert min(ev["by_arm"].values()) > 0  # both arms served the day's flights
    assert set(before["flight_key"].str[:10]) == {DAY}

    # a hostile client re-posts every flight of the day with other features
    altered = [dict(f, distance=4999.0, sched_dep_time=2359) for f in flights]
    _post(url, altered)
    _flushed(url, lake, 2 * len(flights) + 1)
    after = canary.labelled_predictions(lake, rollouts.current(lake))
    cols = ["flight_key", "arm", "version", "score", "distance", "sched_dep_time"]
    pd.testing.assert_frame_equal(
        before[cols].sort_values("flight_key").reset_index(drop=True),
        after[cols].sort_values("flight_key").reset_index(drop=True),
    )
    assert (after["distance"] != 4999.0).all()
    # the log still records exactly what was served, the re-posts included (the shadow's scores apart)
    log = pd.concat([lake.read_parquet(f"predictions/date={DAY}", f) for f in lake.ls(f"predictions/date={DAY}")])
    log = log[log["arm"] != predictions.SHADOW]
    assert len(log) == 2 * len(flights) and (log["distance"] == 4999.0).sum() == len(flights)
    # and monitoring reads the same first answers
    served = predictions.predictions(lake, [DAY])
    assert (served["distance"] != 4999.0).all() and len(served) == len(flights)


def test_the_arms_are_compared_on_the_curated_features_not_on_what_a_client_sent(live_canary):
    """Kills: the arms re-scored on the features a client posted (a client that lies about every flight from its
    first request on would choose the evidence). The served score and arm stay as logged."""
    url, lake, _ = live_canary
    flights = requests_for(DAY)[:300]
    _post(url, [dict(f, distance=4999.0, sched_dep_time=2359) for f in flights])
    _flushed(url, lake, len(flights))
    curate_days(lake, DAY, 1)
    ev = canary.labelled_predictions(lake, rollouts.current(lake))
    assert len(ev) > 0.9 * len(flights)
    assert (ev["distance"] != 4999.0).all() and (ev["sched_dep_time"] != 2359).any()
    true = {f"{DAY}/{f['carrier']}/{f['flight']}/{f['origin']}": f for f in flights}
    for row in ev.head(20).itertuples():
        assert row.distance == true[row.flight_key]["distance"]
    served = predictions.predictions(lake, [DAY])
    pd.testing.assert_series_equal(
        ev.set_index("flight_key")["score"].sort_index(),
        served.set_index("flight_key")["score"].loc[ev["flight_key"]].sort_index(),
    )


def test_flights_first_served_before_the_rollout_started_are_not_evidence(live_canary):
    url, lake, rollout = live_canary
    flights = requests_for(DAY)[:200]
    lake.write_json(rollout | {"started_at": "2099-01-01T00:00:00+00:00"}, *layout.rollout())
    _post(url, flights)
    _flushed(url, lake, len(flights))
    curate_days(lake, DAY, 1)
    assert canary.labelled_predictions(lake, rollouts.current(lake)).empty


def test_a_rollout_without_its_data_date_is_refused(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    with pytest.raises(ValueError, match="no from_date"):
        canary.labelled_predictions(lake, {"version": "2", "champion": "1", "started_at": "2013-01-01"})
