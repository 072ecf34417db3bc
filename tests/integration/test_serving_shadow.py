"""The challenger in the shadow, over real HTTP (uvicorn on a free port, the real app, tiny models): while a canary
of the challenger runs, whatever its share, every flight the champion answers is also scored by the challenger
after the answer is sent, logged with arm ``shadow`` and never returned. A challenger that fails in the shadow is
counted and never reaches a client; one that fails while it serves (share 1.0) fails its requests, counted under
its arm. The shadow queue is bounded: a job that finds it full is dropped and counted, never waited for."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tiny_models import tiny_served

from include.mlops.core import predictions
from include.mlops.core.lake import Lake
from include.mlops.serve.app import ServiceState, Shadow, create_app
from include.mlops.serve.metrics import ServiceMetrics
from include.mlops.serve.models import ModelStore, Resolved, ServedModel
from include.mlops.serve.request import Decoded
from include.mlops.simulate.traffic import requests_for

DAY = "2013-01-22"
FLIGHTS = requests_for(DAY)[:120]


class Failing:
    """A model of a kind whose scoring raises (a challenger that cannot score what it is sent)."""

    def __init__(self, like: ServedModel, version: str):
        self.spec, self.version = like.spec, version

    def predict_array(self, X, threads=1):
        raise RuntimeError(f"v{self.version} cannot score")


class Registry:
    """The aliases, the canary share and the shadow flag, as ``registry_store`` resolves them."""

    def __init__(self):
        self.aliases, self.share, self.shadow = {"champion": "1", "challenger": None}, 0.0, False

    def __call__(self) -> Resolved:
        return Resolved(dict(self.aliases), self.share, self.shadow)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """``(url, registry, lake)``: champion v1, challengers v2 (scores) and v3 (raises), refreshed every 50 ms."""
    from servers import serve

    models = {"1": tiny_served("1", 0), "2": tiny_served("2", 1)}
    models["3"] = ServedModel(Failing(models["2"], "3"))
    registry = Registry()
    lake = Lake((tmp_path_factory.mktemp("shadow") / "lake").as_uri())
    store = ModelStore(registry, lambda v: models[v])
    with serve(create_app(store, lake, refresh_s=0.05, flush_rows=50, flush_s=0.1, max_batch=100)) as url:
        yield url, registry, lake


def serving(url: str, registry: Registry, challenger: str, share: float, shadow: bool) -> None:
    registry.aliases, registry.share, registry.shadow = {"champion": "1", "challenger": challenger}, share, shadow
    expected = {"champion": "1", "challenger": challenger, "canary_share": share, "shadow": shadow and share < 1}
    deadline = time.time() + 10
    while httpx.get(url + "/versions").json() != expected and time.time() < deadline:
        time.sleep(0.02)
    assert httpx.get(url + "/versions").json() == expected


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url + "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def until(url: str, done, timeout: float = 20) -> dict:
    deadline = time.time() + timeout
    while not done(samples := scrape(url)) and time.time() < deadline:
        time.sleep(0.05)
    return samples


def post(client: httpx.Client, url: str, flights: list[dict], singles: int = 10) -> list[httpx.Response]:
    """The first ``singles`` flights one by one, the rest as one batch."""
    answers = [client.post(url + "/predict", json=f) for f in flights[:singles]]
    return answers + [client.post(url + "/predict/batch", json={"flights": flights[singles:]})]


SHADOW_COUNT = "mlops_serve_shadow_duration_seconds_count"
ERRORS = "mlops_serve_prediction_errors_total"
WRITTEN = "mlops_serve_prediction_log_written_rows_total"


def test_at_share_zero_clients_get_the_champion_and_the_log_holds_the_challenger_in_the_shadow(service):
    url, registry, lake = service
    serving(url, registry, "2", 0.0, shadow=True)
    before = scrape(url)
    flights = FLIGHTS[:40]
    with httpx.Client(timeout=30) as client:
        answers = post(client, url, flights)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    answered = [p for r in answers for p in r.json()["predictions"]]
    assert len(answered) == len(flights) and {(p["arm"], p["version"]) for p in answered} == {("champion", "1")}

    requests = len(answers)
    written = value(before, WRITTEN) + 2 * len(flights)  # each flight twice: served and in the shadow
    samples = until(url, lambda s: value(s, SHADOW_COUNT, version="2") >= requests and value(s, WRITTEN) >= written)
    assert value(samples, SHADOW_COUNT, version="2") == requests
    assert value(samples, "mlops_serve_shadow_duration_seconds_bucket", version="2", le="+Inf") == requests
    assert 0 < value(samples, "mlops_serve_shadow_duration_seconds_sum", version="2") < requests * 5
    assert value(samples, WRITTEN) == written
    # the per-arm error counters are there from the arms' first answers on, at 0; nothing dropped
    assert (ERRORS, (("arm", "champion"), ("version", "1"))) in samples
    assert (ERRORS, (("arm", "shadow"), ("version", "2"))) in samples
    assert value(samples, ERRORS, arm="champion", version="1") == value(samples, ERRORS, arm="shadow", version="2") == 0
    assert value(samples, "mlops_serve_shadow_dropped_total") == 0
    assert value(samples, "mlops_serve_predictions_total", arm="challenger", version="2") == 0  # served: none

    keys = {p["flight_key"] for p in answered}
    served = predictions.predictions(lake, [DAY])
    shadow = predictions.predictions(lake, [DAY], shadow=True)
    served, shadow = served[served["flight_key"].isin(keys)], shadow[shadow["flight_key"].isin(keys)]
    assert len(served) == len(shadow) == len(keys)
    assert set(zip(served["arm"], served["version"])) == {("champion", "1")}
    assert set(zip(shadow["arm"], shadow["version"])) == {("shadow", "2")}
    both = served.merge(shadow, on="flight_key", suffixes=("", "_shadow"))
    assert len(both) == len(keys) and (both["request_id"] != both["request_id_shadow"]).all()
    assert (
        pd.to_datetime(both["predicted_at_shadow"], format="ISO8601")
        >= pd.to_datetime(both["predicted_at"], format="ISO8601")
    ).all()
    assert not np.allclose(both["score"], both["score_shadow"])  # the challenger's own scores

    # at share 1.0 the challenger answers every flight: nothing is shadowed, and it answers what it scored in the shadow
    serving(url, registry, "2", 1.0, shadow=True)
    with httpx.Client(timeout=30) as client:
        answers = post(client, url, flights)
    answered = {p["flight_key"]: p for r in answers for p in r.json()["predictions"]}
    assert {(p["arm"], p["version"]) for p in answered.values()} == {("challenger", "2")}
    np.testing.assert_allclose(
        [answered[k]["delay_probability"] for k in shadow["flight_key"]], shadow["score"], rtol=1e-6
    )
    samples = until(url, lambda s: value(s, WRITTEN) >= written + len(flights))
    assert value(samples, SHADOW_COUNT, version="2") == requests and value(samples, WRITTEN) == written + len(flights)


def test_a_challenger_that_fails_in_the_shadow_is_counted_and_never_reaches_a_client(service):
    url, registry, lake = service
    serving(url, registry, "3", 0.0, shadow=True)
    flights = FLIGHTS[40:80]
    with httpx.Client(timeout=30) as client:
        answers = post(client, url, flights)
    assert [r.status_code for r in answers] == [200] * len(answers)
    assert {(p["arm"], p["version"]) for r in answers for p in r.json()["predictions"]} == {("champion", "1")}
    samples = until(url, lambda s: value(s, ERRORS, arm="shadow", version="3") >= len(answers))
    assert value(samples, ERRORS, arm="shadow", version="3") == len(answers)  # one failure per request's job
    assert value(samples, ERRORS, arm="champion", version="1") == 0
    assert value(samples, SHADOW_COUNT, version="3") == 0  # a failure is no latency

    # while it serves every flight (the ramp's last stage), its failure is the request's: counted under its arm
    serving(url, registry, "3", 1.0, shadow=True)
    with httpx.Client(timeout=30) as client:
        failed = post(client, url, flights[:8], singles=4)
    assert [r.status_code for r in failed] == [500] * len(failed)
    samples = scrape(url)
    assert value(samples, ERRORS, arm="challenger", version="3") == len(failed)
    assert value(samples, ERRORS, arm="shadow", version="3") == len(answers)  # nothing more in the shadow
    serving(url, registry, None, 0.0, shadow=False)
    assert httpx.post(url + "/predict", json=flights[0]).status_code == 200


class Blocking:
    """A challenger whose scoring waits until released (a slow model), recording what it scored."""

    version = "2"

    def __init__(self):
        self.release, self.started, self.scored = threading.Event(), threading.Event(), []
        self.encoder = self

    def encode(self, decoded: Decoded):
        return np.zeros((len(decoded.keys), 1))

    def predict_array(self, X, threads=1):
        self.started.set()
        assert self.release.wait(10)
        self.scored.append(len(X))
        return np.full(len(X), 0.5)


class Log:
    """What the shadow worker logs to."""

    def __init__(self):
        self.logged = []

    def put(self, request) -> None:
        self.logged.append(request)


def dropped(metrics: ServiceMetrics) -> float:
    families = text_string_to_metric_families(metrics.exposition().decode())
    return next(s.value for f in families for s in f.samples if s.name == "mlops_serve_shadow_dropped_total")


def test_the_shadow_queue_is_bounded_and_a_full_queue_drops_without_waiting():
    """The worker is busy with one job: the next fills the queue (at most ``max_rows`` flights), the one after is
    dropped and counted; ``submit`` returns at once either way. Released, the worker logs the jobs it took."""
    state = ServiceState()
    state.log = Log()
    metrics = ServiceMetrics(lambda: (None, None, None))
    shadow = Shadow(metrics, state, max_rows=5)
    model = Blocking()

    def job(n: int, first: int = 0) -> Decoded:
        keys = [f"{DAY}/AA/{first + i}/EWR" for i in range(n)]
        return Decoded([{}] * n, keys, [None] * n)

    shadow.start()
    shadow.submit(model, job(3))
    assert model.started.wait(10)  # taken by the worker: the queue is empty again
    started = time.perf_counter()
    shadow.submit(model, job(4, 10))  # queued: 4 of 5
    shadow.submit(model, job(2, 20))  # 6 > 5: dropped
    shadow.submit(model, job(1, 30))  # queued: 5 of 5
    assert time.perf_counter() - started < 0.5 and shadow.pending == 5
    assert dropped(metrics) == 1
    model.release.set()
    shadow.close()
    assert model.scored == [3, 4, 1] and shadow.pending == 0
    logged = state.log.logged
    assert [len(r.keys) for r in logged] == [3, 4, 1] and {a for r in logged for a in r.arms} == {"shadow"}
    assert {v for r in logged for v in r.versions} == {"2"} and len({r.request_id for r in logged}) == 3
    shadow.submit(model, job(1))  # closed: dropped
    assert dropped(metrics) == 2


def test_a_challenger_alias_alone_answers_nothing(service):
    """The gate names the first model challenger before deploy_model promotes it: no champion, no canary. The
    service answers 503 "no model version is deployed yet" (it once answered scores from an uninitialised array
    with version "") and its health says no_model."""
    url, registry, _ = service
    registry.aliases, registry.share, registry.shadow = {"champion": None, "challenger": "2"}, 0.0, False
    expected = {"champion": None, "challenger": "2", "canary_share": 0.0, "shadow": False}
    deadline = time.time() + 10
    while httpx.get(url + "/versions").json() != expected and time.time() < deadline:
        time.sleep(0.02)
    try:
        r = httpx.post(url + "/predict", json=FLIGHTS[0])
        assert r.status_code == 503 and r.json()["detail"] == "no model version is deployed yet", r.text
        assert httpx.get(url + "/health").json()["status"] == "no_model"
    finally:
        serving(url, registry, None, 0.0, shadow=False)
