"""The service's Prometheus endpoint over real HTTP (uvicorn on a free port, the real app, two small models, the
bearer token on): after a known load, every counter says exactly what was sent."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tiny_models import tiny_served

from include.mlops.core.lake import Lake
from include.mlops.serve.app import create_app
from include.mlops.serve.models import ModelStore
from include.mlops.simulate.traffic import requests_for

TOKEN = "metrics-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 64 * 1024  # the body limit of the service under test


class Registry:
    """The aliases, failing the next ``fail`` look-ups (a registry that is down for a while)."""

    def __init__(self):
        self.fail, self.failed = 0, 0

    def __call__(self):
        if self.fail:
            self.fail -= 1
            self.failed += 1
            raise ConnectionError("registry down")
        return {"champion": "1", "challenger": "2"}, 0.3


@pytest.fixture
def service(tmp_path):
    from servers import serve

    models = {"1": tiny_served("1", 0), "2": tiny_served("2", 1)}
    registry = Registry()
    store = ModelStore(registry, lambda v: models[v])
    app = create_app(
        store,
        Lake((tmp_path / "lake").as_uri()),
        refresh_s=0.05,
        flush_rows=50,
        flush_s=0.2,
        token=TOKEN,
        max_body_bytes=LIMIT,
        max_batch=100,
    )
    with serve(app) as url:
        yield url, registry


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_counters_match_a_known_load(service):
    url, registry = service
    flights = requests_for("2013-01-22")
    good_one, batches, batch_size = 12, 3, 40
    arms: Counter = Counter()
    answered: Counter = Counter()  # (route, arm, version): answered requests that arm and version scored in
    with httpx.Client(timeout=30) as client:
        for f in flights[:good_one]:
            r = client.post(url + "/predict", json=f, headers=AUTH)
            assert r.status_code == 200, r.text
            arms.update((p["arm"], p["version"]) for p in r.json()["predictions"])
            answered.update({("/predict", p["arm"], p["version"]) for p in r.json()["predictions"]})
        for i in range(batches):
            body = {"flights": flights[i * batch_size : (i + 1) * batch_size]}
            r = client.post(url + "/predict/batch", json=body, headers=AUTH)
            assert r.status_code == 200, r.text
            arms.update((p["arm"], p["version"]) for p in r.json()["predictions"])
            answered.update({("/predict/batch", p["arm"], p["version"]) for p in r.json()["predictions"]})
        # rejected: 4 invalid (3 kinds), 2 too large, 1 too long a batch, 2 without the token
        bad = [
            ("/predict", flights[0] | {"distance": "far"}),  # validation
            ("/predict", flights[0] | {"month": 13}),  # validation (out of range)
            ("/predict", flights[0] | {"origin": "jfk"}),  # pattern
            ("/predict/batch", {"flights": [flights[0] | {"day": 30, "month": 2}]}),  # date
        ]
        for path, body in bad:
            assert client.post(url + path, json=body, headers=AUTH).status_code == 422
        big = {"flights": flights[:1] * 400}  # over LIMIT
        for _ in range(2):
            assert client.post(url + "/predict/batch", json=big, headers=AUTH).status_code == 413
        assert client.post(url + "/predict/batch", json={"flights": flights[:101]}, headers=AUTH).status_code == 422
        for _ in range(2):
            assert client.post(url + "/predict", json=flights[0]).status_code == 401
    n_flights = good_one + batches * batch_size
    assert sum(arms.values()) == n_flights and {a for a, _ in arms} == {"champion", "challenger"}

    deadline = time.time() + 10  # the log writes its records within flush_s
    while time.time() < deadline:
        samples = scrape(url)
        log_done = value(samples, "mlops_serve_prediction_log_written_rows_total") >= n_flights
        if log_done and value(samples, "mlops_serve_prediction_log_pending_rows") == 0:
            break
        time.sleep(0.1)

    requests = "mlops_serve_requests_total"
    assert value(samples, requests, route="/predict", status="200") == good_one
    assert value(samples, requests, route="/predict/batch", status="200") == batches
    assert value(samples, requests, route="/predict", status="422") == 3
    assert value(samples, requests, route="/predict/batch", status="422") == 2
    assert value(samples, requests, route="/predict/batch", status="413") == 2
    assert value(samples, requests, route="/predict", status="401") == 2
    hist = "mlops_serve_request_duration_seconds"
    assert value(samples, hist + "_count", route="/predict", status="200") == good_one
    assert value(samples, hist + "_bucket", route="/predict", status="200", le="+Inf") == good_one
    assert 0 < value(samples, hist + "_sum", route="/predict", status="200") < good_one * 5
    assert value(samples, hist + "_count", route="/predict/batch", status="200") == batches

    for (arm, version), n in arms.items():
        assert value(samples, "mlops_serve_predictions_total", arm=arm, version=version) == n
    # answered prediction requests by arm and version: a single flight once, a batch once per arm that scored in it
    served = "mlops_serve_prediction_duration_seconds"
    assert sum(answered[k] for k in answered if k[0] == "/predict") == good_one
    assert batches <= sum(answered[k] for k in answered if k[0] == "/predict/batch") <= 2 * batches
    for (route, arm, version), n in answered.items():
        labels = {"route": route, "arm": arm, "version": version}
        assert value(samples, served + "_count", **labels) == n, (route, arm, version)
        assert value(samples, served + "_bucket", **labels, le="+Inf") == n
        assert 0 < value(samples, served + "_sum", **labels) < n * 5
    got = {labels for name, labels in samples if name == served + "_count"}
    assert got == {tuple(sorted({"route": r, "arm": a, "version": v}.items())) for r, a, v in answered}
    rejected = "mlops_serve_rejected_total"
    assert value(samples, rejected, route="/predict", status="422", reason="validation") == 2
    assert value(samples, rejected, route="/predict", status="422", reason="pattern") == 1
    assert value(samples, rejected, route="/predict/batch", status="422", reason="date") == 1
    assert value(samples, rejected, route="/predict/batch", status="422", reason="too_long") == 1
    assert value(samples, rejected, route="/predict/batch", status="413", reason="too_large") == 2
    assert sum(v for (name, _), v in samples.items() if name == rejected) == 7  # 401 is not a rejected body

    log = "mlops_serve_prediction_log_"
    assert value(samples, log + "written_rows_total") == n_flights
    assert value(samples, log + "pending_rows") == 0
    assert value(samples, log + "spill_rows") == 0 and value(samples, log + "spilled_rows_total") == 0
    assert value(samples, log + "lost_rows_total") == 0
    assert value(samples, "mlops_serve_model_info", arm="champion", version="1") == 1
    assert value(samples, "mlops_serve_model_info", arm="challenger", version="2") == 1
    assert value(samples, "mlops_serve_canary_share") == 0.3
    assert value(samples, "mlops_serve_model_refresh_failures_total") == 0
    assert value(samples, "mlops_serve_model_refresh_ok") == 1
    # the process: CPU and memory (the client's default process collector)
    assert value(samples, "process_cpu_seconds_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 10_000_000
    # the scrapes count too, by their own route; /health as well; an unknown path is "other", never itself
    httpx.get(url + "/no/such/path")
    samples = scrape(url)
    assert value(samples, requests, route="/metrics", status="200") >= 1  # the scrapes before this one
    assert value(samples, requests, route="other", status="404") == 1
    assert not any("/no/such/path" in str(labels) for _, labels in samples)

    # model refresh failures: the registry refuses three look-ups
    registry.fail = 3
    deadline = time.time() + 10
    while time.time() < deadline:
        samples = scrape(url)
        if value(samples, "mlops_serve_model_refresh_failures_total") >= 3 and not registry.fail:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # a few more refreshes, all working
    samples = scrape(url)
    assert registry.failed == 3
    assert value(samples, "mlops_serve_model_refresh_failures_total") == 3
    assert value(samples, "mlops_serve_model_refresh_ok") == 1
    health = httpx.get(url + "/health").json()
    assert health["refresh"]["failures"] == 3


def test_the_prediction_log_under_a_refusing_lake_shows_in_the_metrics(service, tmp_path):
    """Queue depth and spilled rows: with the lake refusing writes, the records are spilled and counted. The lake
    refuses in the filesystem (its predictions folder is a plain file): the log's writer is a process of its own."""
    url, _ = service
    flights = requests_for("2013-01-22")[:30]
    blocker = tmp_path / "lake" / "predictions"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    try:
        r = httpx.post(url + "/predict/batch", json={"flights": flights}, headers=AUTH)
        assert r.status_code == 200
        deadline = time.time() + 10
        while time.time() < deadline:
            samples = scrape(url)
            if value(samples, "mlops_serve_prediction_log_spilled_rows_total") >= len(flights):
                break
            time.sleep(0.1)
        log = "mlops_serve_prediction_log_"
        assert value(samples, log + "spilled_rows_total") == len(flights)
        assert value(samples, log + "spill_rows") == len(flights)
        assert value(samples, log + "lake_failures_total") >= 1
        assert value(samples, log + "written_rows_total") == 0
    finally:
        blocker.unlink()
    deadline = time.time() + 15  # the lake takes them again: written, the spill folder empty
    while time.time() < deadline:
        samples = scrape(url)
        if value(samples, "mlops_serve_prediction_log_written_rows_total") >= len(flights):
            break
        time.sleep(0.2)
    assert value(samples, "mlops_serve_prediction_log_written_rows_total") == len(flights)
    assert value(samples, "mlops_serve_prediction_log_spill_rows") == 0
