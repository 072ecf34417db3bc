"""The prediction service against hostile and careless clients, over real HTTP (uvicorn on a free port, the real
app and models): oversized bodies get 413 before they are parsed while /health keeps answering, an over-long batch
is refused before its flights are validated, a 422 names the field and stays small, NaN / Infinity / values out of
physical range / coerced types / unknown fields / impossible dates get 422 (never 500), one flight and a batch have
routes of their own, /predict requires the bearer token when one is set (the scheme in any case), and clients that
open connections and never finish a request are closed, and counted, while /health keeps answering."""

from __future__ import annotations

import json
import re
import selectors
import socket
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest

from include.mlops.core.config import serve_token
from include.mlops.core.lake import Lake
from include.mlops.serve.app import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY_BYTES, create_app
from include.mlops.serve.models import ModelStore
from include.mlops.serve.server import Limits, make_server
from include.mlops.simulate.traffic import replay, requests_for

DAY = "2013-01-22"
SMALL_LIMIT = 256 * 1024  # the body limit of the service under test (the default is far larger)
TOKEN = "s3cret-token-for-tests-0123456789abcdef"


@pytest.fixture(scope="module")
def flights():
    return [{k: v for k, v in f.items()} for f in requests_for(DAY)]


def _app(models, tmp_path, **kwargs):
    store = ModelStore(lambda: ({"champion": "1", "challenger": None}, 0.0), lambda v: models[v])
    return create_app(store, Lake((tmp_path / "lake").as_uri()), refresh_s=60, flush_rows=100, flush_s=0.3, **kwargs)


@pytest.fixture
def service(models, tmp_path):
    from servers import serve

    with serve(_app(models, tmp_path, max_body_bytes=SMALL_LIMIT, max_batch=500)) as url:
        yield url


def raw_request(url: str, head: str, body_chunks=(), pause: float = 0.0, read_timeout: float = 10.0):
    """Send a request byte by byte as a hostile client would (headers, then body chunks with pauses); return
    (status, response text, seconds until the status line came)."""
    parts = urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port))
    s.settimeout(read_timeout)
    t0 = time.perf_counter()
    try:
        s.sendall(head.encode())
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break  # the server answered and closed: what it said is read below
            time.sleep(pause)
        data = b""
        while b"\r\n\r\n" not in data:
            got = s.recv(65536)
            if not got:
                break
            data += got
        took = time.perf_counter() - t0
        try:
            while True:
                got = s.recv(65536)
                if not got:
                    break
                data += got
        except OSError:
            pass
    finally:
        s.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
    return status, data.decode(errors="replace"), took


def _head(path: str, length: int | None = None, extra: str = "") -> str:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{size}{extra}\r\n"


# size ----------------------------------------------------------------------------------------------------------
def test_a_body_announced_too_large_gets_413_before_a_byte_of_it_is_read(service):
    """The issue's 19.5 MB batch: refused from its Content-Length at once; /health answers within 100 ms while
    the refused request's connection is still open."""
    status, text, took = raw_request(service, _head("/predict/batch", 19_500_000), body_chunks=[b"[" * 1000], pause=0.5)
    assert status == 413 and took < 1.0, (status, took)
    assert "MLOPS_SERVE_MAX_BODY_BYTES" in text and len(text) < 1000


def test_a_streamed_body_is_cut_off_at_the_limit_and_health_keeps_answering(service, flights):
    """Chunked, no Content-Length, sent slowly: 413 once the streamed bytes pass the limit; meanwhile /health
    answers within 100 ms every time."""
    one = json.dumps(flights[0]).encode()
    piece = b'{"flights": [' + b",".join([one] * 200)
    chunk = lambda b: f"{len(b):x}\r\n".encode() + b + b"\r\n"  # noqa: E731
    chunks = [chunk(piece)] + [chunk(b"," + b",".join([one] * 100))] * 40
    result = {}
    sender = threading.Thread(
        target=lambda: result.update(r=raw_request(service, _head("/predict/batch"), chunks, pause=0.05))
    )
    sender.start()
    worst = 0.0
    with httpx.Client(base_url=service, timeout=5) as c:
        while sender.is_alive():
            t = time.perf_counter()
            assert c.get("/health").status_code == 200
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.02)
    sender.join()
    status, text, _ = result["r"]
    assert status == 413, text[:500]
    assert worst < 0.1, f"/health took {worst * 1000:.0f} ms while an oversized body was streamed"


def test_the_default_limits_refuse_the_issues_hostile_batches_fast(models, tmp_path, flights):
    """With the default settings: 100,000 flights (about 20 MB) get 413 by their size; 30,000 small flights that
    fit the size limit get 422 by their count, in far less time than validating them would take, with a small
    body."""
    from servers import serve

    assert DEFAULT_MAX_BODY_BYTES < 20_000_000
    from include.mlops.core import schema

    bare = {f.column.name: flights[0][f.column.name] for f in schema.request_fields() if f.required}
    with serve(_app(models, tmp_path)) as url, httpx.Client(base_url=url, timeout=60) as c:
        big = json.dumps({"flights": [flights[0]] * 100_000}).encode()
        t = time.perf_counter()
        try:
            r = c.post("/predict/batch", content=big, headers={"content-type": "application/json"})
            assert r.status_code == 413 and len(r.content) < 1000
        except httpx.TransportError:
            pass  # the server answered 413 and closed while the client was still sending: also a refusal
        assert time.perf_counter() - t < 5
        status, _, took = raw_request(url, _head("/predict/batch", len(big)))
        assert status == 413 and took < 1.0
        many = json.dumps({"flights": [bare] * (3 * DEFAULT_MAX_BATCH)}).encode()
        assert len(many) < DEFAULT_MAX_BODY_BYTES
        t = time.perf_counter()
        r = c.post("/predict/batch", content=many, headers={"content-type": "application/json"})
        took = time.perf_counter() - t
        assert r.status_code == 422 and f"at most {DEFAULT_MAX_BATCH} flights" in r.text, r.text[:300]
        assert len(r.content) < 1000 and took < 2.0, (len(r.content), took)
        # JSON nested a million deep: 422, not the decoder's recursion error as a 500
        deep = b'{"flights": [' + b"[" * 1_500_000 + b"]" * 1_500_000 + b"]}"
        for path in ("/predict/batch", "/predict"):
            r = c.post(path, content=deep, headers={"content-type": "application/json"})
            assert r.status_code == 422 and len(r.content) < 1000, (path, r.status_code, r.text[:300])
        assert c.get("/health").status_code == 200


def test_the_batch_cap_is_checked_before_any_flight_is_validated(service, flights):
    """501 flights with the last one broken: the answer is about the count, not the broken flight."""
    batch = flights[:500] + [dict(flights[0], month="one")]
    r = httpx.post(service + "/predict/batch", json={"flights": batch})
    assert r.status_code == 422 and "at most 500 flights, got 501" in r.text, r.text[:300]
    r = httpx.post(service + "/predict/batch", json={"flights": flights[:500]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 500
    r = httpx.post(service + "/predict/batch", json={"flights": []})
    assert r.status_code == 422 and "flights" in r.text


# content -------------------------------------------------------------------------------------------------------
def test_a_422_names_the_field_and_never_echoes_a_large_input(service, flights):
    huge = "X" * 200_000
    for body in (dict(flights[0], carrier=huge), dict(flights[0], **{huge: 1}), dict(flights[0], temp=[1.0] * 20_000)):
        r = httpx.post(service + "/predict", json=body)
        assert r.status_code == 422 and len(r.content) < 1000, (r.status_code, len(r.content))
    r = httpx.post(service + "/predict/batch", json={"flights": flights[:50] + [dict(flights[0], carrier=huge)]})
    assert r.status_code == 422 and len(r.content) < 1000
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "flights", 50, "carrier"] and "regex" in err["msg"]


@pytest.mark.parametrize(
    "raw, field",
    [
        ('"distance": NaN', None),  # not JSON: no such literal
        ('"distance": Infinity', None),
        ('"distance": 1e999', "distance"),  # a number too large for a float
        ('"temp": -1e999', "temp"),
        ('"distance": -5', "distance"),  # out of physical range (datasets.yaml: min 1)
        ('"distance": 60000', "distance"),
        ('"humid": 101', "humid"),
        ('"pressure": 0', "pressure"),
        ('"sched_dep_time": 2400', "sched_dep_time"),
        ('"month": 0', "month"),
    ],
)
def test_nan_infinity_and_values_out_of_physical_range_get_422(service, flights, raw, field):
    key = raw.split(":")[0].strip('"')
    body = json.dumps({k: v for k, v in flights[0].items() if k != key})[:-1] + ", " + raw + "}"
    r = httpx.post(service + "/predict", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 422, (r.status_code, r.text[:300])
    if field:
        assert r.json()["detail"][0]["loc"][-1] == field, r.text


@pytest.mark.parametrize(
    "change, field",
    [
        ({"sched_dep_time": "1000"}, "sched_dep_time"),  # a string for a number
        ({"distance": "1400"}, "distance"),
        ({"flight": True}, "flight"),  # a bool for a flight number
        ({"flight": 1545.0}, "flight"),  # a float for an integer
        ({"year": "2013"}, "year"),
        ({"carrier": 12}, "carrier"),
        ({"temp": "cold"}, "temp"),
        ({"time_hour": 1358762400}, "time_hour"),
    ],
)
def test_no_silent_coercion(service, flights, change, field):
    r = httpx.post(service + "/predict", json=flights[0] | change)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"][0]["loc"] == ["body", field], r.text


def test_unknown_fields_are_refused(service, flights):
    r = httpx.post(service + "/predict", json=flights[0] | {"arr_delay": 5.0})
    assert r.status_code == 422 and "arr_delay" in r.text  # known only after the flight: never sent
    r = httpx.post(service + "/predict/batch", json={"flights": flights[:2], "priority": "high"})
    assert r.status_code == 422 and "priority" in r.text


@pytest.mark.parametrize(
    "change, field",
    [
        ({"month": 2, "day": 30, "time_hour": "2013-02-28T15:00:00Z"}, "day"),  # no 30 February
        ({"month": 4, "day": 31, "time_hour": "2013-04-30T15:00:00Z"}, "day"),
        ({"time_hour": "2013-01-25T15:00:00Z"}, "time_hour"),  # three days after the flight's date
        ({"time_hour": "2013-01-20T15:00:00Z"}, "time_hour"),  # two days before
        ({"time_hour": "2013-02-30T10:00:00Z"}, "time_hour"),  # the format, but no such day
        ({"time_hour": "2013-01-22 10:00"}, "time_hour"),  # not the declared format
    ],
)
def test_the_date_is_real_and_agrees_with_the_departure_hour(service, flights, change, field):
    r = httpx.post(service + "/predict", json=flights[0] | change)
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"][0]["loc"][-1] == field, r.text


def test_a_late_evening_flight_is_on_its_local_date(service, flights):
    """21:59 in New York on 22 January is 02:00 UTC on the 23rd: the same flight, accepted."""
    r = httpx.post(
        service + "/predict", json=flights[0] | {"sched_dep_time": 2159, "time_hour": "2013-01-23T02:00:00Z"}
    )
    assert r.status_code == 200, r.text


def test_one_flight_and_a_batch_have_routes_of_their_own(service, flights):
    r = httpx.post(service + "/predict", json={"flights": flights[:3]})
    assert r.status_code == 422 and "/predict/batch" in r.text
    r = httpx.post(service + "/predict/batch", json=flights[0])
    assert r.status_code == 422 and "flights" in r.text
    assert (
        httpx.post(service + "/predict", content=b"[1, 2", headers={"content-type": "application/json"}).status_code
        == 422
    )
    assert httpx.post(service + "/predict", content=b"").status_code == 422
    doc = httpx.get(service + "/openapi.json").json()
    assert {"/predict", "/predict/batch"} <= set(doc["paths"])
    assert "Flight" in doc["components"]["schemas"]


# access --------------------------------------------------------------------------------------------------------
def test_predict_requires_the_bearer_token_when_one_is_set(models, tmp_path, flights, monkeypatch):
    from servers import serve

    with serve(_app(models, tmp_path, token=TOKEN)) as url:
        assert httpx.get(url + "/health").status_code == 200  # open
        assert httpx.get(url + "/versions").status_code == 200
        for headers in (
            {},
            {"authorization": "Bearer wrong"},
            {"authorization": TOKEN},
            {"authorization": f"Basic {TOKEN}"},
            {"authorization": f"Bearer {TOKEN}x"},
        ):
            r = httpx.post(url + "/predict", json=flights[0], headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
            assert TOKEN not in r.text
            assert httpx.post(url + "/predict/batch", json={"flights": flights[:2]}, headers=headers).status_code == 401
        ok = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.post(url + "/predict", json=flights[0], headers=ok).status_code == 200
        for scheme in ("bearer", "BEARER", "bEaReR"):  # the scheme is case-insensitive (RFC 7235), the token not
            r = httpx.post(url + "/predict", json=flights[0], headers={"authorization": f"{scheme} {TOKEN}"})
            assert r.status_code == 200, (scheme, r.text)
        r = httpx.post(url + "/predict", json=flights[0], headers={"authorization": f"bearer {TOKEN.upper()}"})
        assert r.status_code == 401
        assert httpx.post(url + "/predict/batch", json={"flights": flights[:2]}, headers=ok).status_code == 200
        # an unauthorised client cannot make the service read a large body either
        status, _, took = raw_request(url, _head("/predict/batch", 5_000_000))
        assert status == 401 and took < 1.0
        # the traffic replay sends the token of the environment (MLOPS_SERVE_TOKEN_FILE here)
        monkeypatch.delenv("MLOPS_SERVE_TOKEN", raising=False)
        monkeypatch.setenv("MLOPS_SERVE_TOKEN_FILE", str(tmp_path / "token"))
        (tmp_path / "token").write_text(TOKEN + "\n")
        assert serve_token() == TOKEN
        done = replay(DAY, url, concurrency=2, batch_size=200)
        assert done.errors == 0 and sum(done.arms.values()) == done.flights
        monkeypatch.setenv("MLOPS_SERVE_TOKEN", "not-it")
        assert replay(DAY, url, concurrency=2, batch_size=400).errors > 0


def test_a_token_shorter_than_the_rule_is_refused(models, tmp_path):
    with pytest.raises(ValueError, match=r"token \(token\) is too short \(5 characters, need at least 32\)"):
        _app(models, tmp_path, token="short")


# connections -----------------------------------------------------------------------------------------------------
@contextmanager
def guarded_service(app, limits: Limits):
    """The service under the server `make serve` runs it under (``serve.server``), on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = make_server(app, "127.0.0.1", port, limits, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _refused(text: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^mlops_serve_connections_refused_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    }


def test_connections_that_never_finish_a_request_are_closed_and_counted_while_health_answers(models, tmp_path):
    """The issue's idle clients, scaled down: with at most 40 connections and a request's headers (and body) due
    within 1.5 s, 300 connections that send part of a request line or of the headers, or nothing, and 5 whose
    body never comes: /health answers at once while they are held (each new connection closes the one that has
    waited longest), the server closes every one of them within the timeout, and /metrics counts them by reason."""
    limits = Limits(max_connections=40, header_timeout_s=1.5, keepalive_s=1.0, body_timeout_s=1.5)
    partial = [b"POST /predict HTTP/1.1\r\nHost: t", b"GET /hea", b""]
    held: list[socket.socket] = []
    with guarded_service(_app(models, tmp_path), limits) as url, selectors.DefaultSelector() as sel:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        try:
            for i in range(300):
                s = socket.create_connection((host, port), timeout=5)
                held.append(s)
                if partial[i % 3]:
                    s.sendall(partial[i % 3])
            for _ in range(5):  # headers complete, the body never finished
                s = socket.create_connection((host, port), timeout=5)
                held.append(s)
                s.sendall(_head("/predict", 1000).encode() + b'{"year": 2013')
            opened = time.monotonic()
            with httpx.Client(base_url=url, timeout=5) as c:
                for _ in range(5):
                    t = time.perf_counter()
                    assert c.get("/health").status_code == 200
                    assert time.perf_counter() - t < 1.0, "/health was slow while idle connections were held"
            for s in held:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            open_ = set(held)
            while open_ and time.monotonic() < opened + limits.header_timeout_s + 3.0:
                for key, _ in sel.select(0.2):
                    try:
                        closed = not key.fileobj.recv(65536)  # a 408 first, then the end
                    except OSError:  # reset: closed too
                        closed = True
                    if closed:
                        sel.unregister(key.fileobj)
                        open_.discard(key.fileobj)
            assert not open_, f"{len(open_)} of {len(held)} idle connections still open after the timeout"
            refused = _refused(httpx.get(url + "/metrics").text)
        finally:
            for s in held:
                s.close()
    assert refused["evicted"] >= 300 + 5 - limits.max_connections, refused
    assert refused["evicted"] + refused["header_timeout"] >= 300 and refused["header_timeout"] >= 1, refused
    assert refused["body_timeout"] == 5 and refused["limit"] == 0, refused


def test_a_connection_beyond_the_limit_is_refused_when_every_one_is_busy(models, tmp_path):
    """Three requests whose bodies are coming (busy: never closed to make room) fill a limit of three: a fourth
    connection gets 503 and is counted under ``limit``; once their bodies time out, /health answers again."""
    limits = Limits(max_connections=3, header_timeout_s=1.0, keepalive_s=1.0, body_timeout_s=1.0)
    busy = []
    with guarded_service(_app(models, tmp_path), limits) as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        try:
            for _ in range(3):
                s = socket.create_connection((host, port), timeout=5)
                busy.append(s)
                s.sendall(_head("/predict", 1000).encode() + b"{")
            time.sleep(0.2)  # their headers are read
            status, _, _ = raw_request(url, "GET /health HTTP/1.1\r\nHost: t\r\n\r\n", read_timeout=5)
            assert status == 503
            deadline = time.monotonic() + 5
            while True:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "/health never came back after the bodies timed out"
                time.sleep(0.2)
            refused = _refused(httpx.get(url + "/metrics").text)
        finally:
            for s in busy:
                s.close()
    assert refused["limit"] >= 1 and refused["body_timeout"] == 3, refused
