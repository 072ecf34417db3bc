"""The real prediction service over real HTTP (uvicorn on a free loopback port) with two tiny models, for tests
that need its traffic and /metrics but not what a model learnt (monitoring's check of the service)."""

from __future__ import annotations

import time
from contextlib import contextmanager

TOKEN = "tiny-service-token-0123456789abcdef"  # at least 32 characters, as the service requires
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def tiny_service(tmp_path):
    """Yields the service's URL: champion v1 and challenger v2 (30 % of flights), the bearer token ``TOKEN``."""
    from servers import serve
    from tiny_models import tiny_served

    from include.mlops.core.lake import Lake
    from include.mlops.serve.app import create_app
    from include.mlops.serve.models import ModelStore

    models = {"1": tiny_served("1", 0), "2": tiny_served("2", 1)}
    store = ModelStore(lambda: ({"champion": "1", "challenger": "2"}, 0.3), lambda v: models[v])
    app = create_app(store, Lake((tmp_path / "service-lake").as_uri()), refresh_s=0.5, token=TOKEN, max_batch=100)
    with serve(app) as url:
        yield url


def send(url: str, flights: list[dict], singles: int, batches: int = 0, batch_size: int = 20) -> dict:
    """``singles`` flights one by one on /predict, then ``batches`` batches on /predict/batch; returns what was
    answered (``answered``: requests; ``slowest_s``: the slowest as the client timed it)."""
    import httpx

    answered, slowest = 0, 0.0
    with httpx.Client(timeout=30) as client:
        bodies = [("/predict", f) for f in flights[:singles]] + [
            ("/predict/batch", {"flights": flights[i * batch_size : (i + 1) * batch_size]}) for i in range(batches)
        ]
        for path, body in bodies:
            started = time.perf_counter()
            r = client.post(url + path, json=body, headers=AUTH)
            slowest = max(slowest, time.perf_counter() - started)
            assert r.status_code == 200, r.text
            answered += 1
    return {"answered": answered, "slowest_s": slowest}
