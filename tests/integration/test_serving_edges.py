"""The prediction service at its edges, over real HTTP (uvicorn on a free port, the real app, two small models):
a version whose load fails during a refresh is a visible failure that changes nothing served, and the body limit
holds to the byte (a body of exactly the limit is read, one byte more is refused)."""

from __future__ import annotations

import time

import httpx
import pytest
from tiny_models import tiny_served

from include.mlops.core.lake import Lake
from include.mlops.serve.app import create_app
from include.mlops.serve.models import ModelStore
from include.mlops.simulate.traffic import requests_for

FLIGHTS = requests_for("2013-01-22")[:100]


class Registry:
    """The aliases as the service resolves them, and version loads; a version in ``broken`` fails to load."""

    def __init__(self):
        self.models = {v: tiny_served(v, seed) for v, seed in (("1", 0), ("2", 1), ("3", 2), ("4", 3))}
        self.aliases, self.share, self.broken = {"champion": "1", "challenger": "2"}, 0.5, set()

    def resolve(self):
        return dict(self.aliases), self.share

    def load(self, version: str):
        if version in self.broken:
            raise FileNotFoundError(f"model artifact of version {version} not found")
        return self.models[version]


LIMIT = 64 * 1024  # the body limit of the service under test


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One service for the module: ``(url, registry)``, refreshing every 50 ms."""
    from servers import serve

    registry = Registry()
    store = ModelStore(registry.resolve, registry.load)
    lake = Lake((tmp_path_factory.mktemp("edges") / "lake").as_uri())
    with serve(create_app(store, lake, refresh_s=0.05, flush_s=0.2, max_body_bytes=LIMIT)) as url:
        yield url, registry


def served_by(url: str) -> set[tuple[str, str]]:
    r = httpx.post(url + "/predict/batch", json={"flights": FLIGHTS}, timeout=30)
    assert r.status_code == 200, r.text
    return {(p["arm"], p["version"]) for p in r.json()["predictions"]}


def wait_for(url: str, status: str) -> dict:
    deadline = time.time() + 10
    while (health := httpx.get(url + "/health").json())["status"] != status and time.time() < deadline:
        time.sleep(0.05)
    return health


def failures(url: str) -> float:
    line = next(x for x in httpx.get(url + "/metrics").text.splitlines() if x.startswith("mlops_serve_model_refresh_f"))
    return float(line.split()[-1])


def test_a_version_that_fails_to_load_is_a_failed_refresh_and_changes_nothing_served(service):
    """Kills: the load error swallowed, so that every flight goes to the other arm while /health says ok. For
    either arm, the refresh fails (counted, /health "stale" with the error), both arms keep serving their flights,
    and the version is served once it loads."""
    url, registry = service
    for arm, version in (("challenger", "3"), ("champion", "4")):
        registry.aliases, registry.broken = {"champion": "1", "challenger": "2"}, set()
        both = {("champion", "1"), ("challenger", "2")}
        # the previous arm's version (served once it loaded) is replaced at the next refresh, not at once
        deadline = time.time() + 10
        while (h := wait_for(url, "ok"))["challenger"] != "2" or h["champion"] != "1":
            assert time.time() < deadline, h
            time.sleep(0.05)
        assert served_by(url) == both
        counted = failures(url)
        registry.broken = {version}
        registry.aliases = registry.aliases | {arm: version}
        health = wait_for(url, "stale")
        assert health["status"] == "stale" and health["champion"] == "1" and health["challenger"] == "2", health
        assert health["refresh"]["ok"] is False and f"version {version} not found" in health["refresh"]["error"]
        assert health["refresh"]["failures"] >= 1 and failures(url) > counted
        assert served_by(url) == both  # not every flight to the arm that loaded
        registry.broken = set()
        health = wait_for(url, "ok")
        assert health["status"] == "ok" and health[arm] == version, health
        assert (arm, version) in served_by(url)


def body_of(size: int) -> bytes:
    """A valid /predict body of exactly ``size`` bytes (JSON padded with trailing spaces)."""
    import json

    body = json.dumps(FLIGHTS[0]).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def test_the_body_limit_holds_to_the_byte(service):
    """Kills: ``>`` read as ``>=`` (a body of exactly the limit refused) or a limit that lets one byte more in,
    for a body announced by its Content-Length and for one streamed in chunks."""
    url, _ = service
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=30) as c:
        for size, expected in ((LIMIT, 200), (LIMIT + 1, 413)):
            body = body_of(size)
            announced = c.post("/predict", content=body, headers=headers)
            streamed = c.post("/predict", content=iter([body[: size // 2], body[size // 2 :]]), headers=headers)
            assert announced.request.headers["content-length"] == str(size)
            assert "content-length" not in streamed.request.headers  # chunked: counted as it arrives
            assert (announced.status_code, streamed.status_code) == (expected, expected), (size, announced.text)
            if expected == 413:
                assert f"at most {LIMIT}" in announced.text and f"over {LIMIT} bytes" in streamed.text
