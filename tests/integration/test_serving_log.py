"""The prediction log under pressure, with the real service, the real lake and real load: while the lake refuses
writes (its predictions folder is a file: every write fails in the filesystem), the records go to the local spill
folder, memory stays within its bound, and nothing is lost; once the lake takes writes again everything is written
exactly once; a service stopped while the lake refuses spills what it holds, and the next one writes it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.serve.app import create_app
from include.mlops.serve.models import ModelStore
from include.mlops.simulate.traffic import requests_for

DAY = "2013-01-22"
MAX_ROWS = 500


def _app(models, lake, spill):
    store = ModelStore(lambda: ({"champion": "1", "challenger": None}, 0.0), lambda v: models[v])
    return create_app(
        store, lake, refresh_s=60, flush_rows=100, flush_s=0.2, log_max_rows=MAX_ROWS, spill_dir=spill, log_retry_s=0.3
    )


class Refusal:
    """The lake refuses every prediction write while on: its predictions folder is a plain file."""

    def __init__(self, root: Path):
        self.blocker = root / layout.prediction_log()

    def on(self):
        self.blocker.parent.mkdir(parents=True, exist_ok=True)
        self.blocker.write_text("not a folder")

    def off(self):
        self.blocker.unlink()


def logged_rows(lake: Lake) -> pd.DataFrame:
    parts = [
        lake.read_parquet(layout.predictions(d), n)
        for d in layout.partitions(lake, layout.prediction_log())
        for n in lake.ls(layout.predictions(d))
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["request_id", "flight_key"])


def _load(url, flights, seconds, batch=50):
    until = time.time() + seconds

    def client_loop(i):
        out = []
        with httpx.Client(base_url=url, timeout=30) as c:
            j = i
            while time.time() < until:
                body = flights[(j * batch) % (len(flights) - batch) :][:batch]
                r = c.post("/predict/batch", json={"flights": body})
                assert r.status_code == 200, r.text[:300]
                out.append((r.json()["request_id"], len(body)))
                j += 8
        return out

    with ThreadPoolExecutor(8) as pool:
        return [x for xs in pool.map(client_loop, range(8)) for x in xs]


def _wait(url, cond, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        h = httpx.get(url + "/health").json()
        if cond(h):
            return h
        time.sleep(0.2)
    raise AssertionError(f"not reached in {timeout} s: {h}")


def test_a_lake_refusing_writes_under_load_loses_nothing_and_memory_stays_bounded(models, tmp_path):
    from servers import serve

    root = tmp_path / "lake"
    root.mkdir()
    lake, spill, refusal = Lake(root.as_uri()), tmp_path / "spill", Refusal(root)
    flights = requests_for(DAY)
    refusal.on()
    with serve(_app(models, lake, spill)) as url:
        peak = {"pending": 0}
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak["pending"] = max(peak["pending"], httpx.get(url + "/health").json()["pending_log"])
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        sent = _load(url, flights, seconds=3)
        h = _wait(url, lambda h: h["pending_log"] == 0)
        stop.set()
        watcher.join()
        rows = sum(n for _, n in sent)
        assert rows > 3 * MAX_ROWS, rows  # far more than memory may hold
        assert h["logged"] == 0 and h["spilled_log"] == rows and h["log_lake_failures"] >= 1, h
        assert h["log_peak_pending"] <= MAX_ROWS and peak["pending"] <= MAX_ROWS, (h, peak)
        assert len(logged_rows(lake)) == 0
        refusal.off()  # the lake recovers: the spilled rows are written
        h = _wait(url, lambda h: h["spilled_log"] == 0 and h["logged"] == rows)
        # and it keeps working normally afterwards
        more = _load(url, flights, seconds=0.5)
        rows += sum(n for _, n in more)
        _wait(url, lambda h: h["logged"] == rows and h["pending_log"] == 0)
    log = logged_rows(lake)
    assert len(log) == rows  # nothing lost ...
    assert not log.duplicated(["request_id", "flight_key"]).any()  # ... nothing twice
    assert set(log["request_id"]) == {rid for rid, _ in sent + more}
    assert {"flight_key", "score", "version", "arm", "predicted_at", "carrier", "distance", "time_hour"} <= set(
        log.columns
    )
    assert not list(spill.glob("*spill*"))


def test_a_service_stopped_while_the_lake_refuses_spills_and_the_next_one_writes(models, tmp_path):
    from servers import serve

    root = tmp_path / "lake"
    root.mkdir()
    lake, spill, refusal = Lake(root.as_uri()), tmp_path / "spill", Refusal(root)
    flights = requests_for(DAY)
    refusal.on()
    with serve(_app(models, lake, spill)) as url:
        sent = _load(url, flights, seconds=0.5)
    rows = sum(n for _, n in sent)
    spilled = list(spill.glob("spill-*.jsonl"))
    assert spilled and sum(len(f.read_bytes().splitlines()) for f in spilled) == rows
    refusal.off()
    with serve(_app(models, lake, spill)) as url:
        _wait(url, lambda h: h["logged"] == rows and h["spilled_log"] == 0)
    log = logged_rows(lake)
    assert len(log) == rows and set(log["request_id"]) == {rid for rid, _ in sent}
    assert not list(spill.glob("*spill*"))


def test_a_request_larger_than_the_memory_bound_goes_to_disk_then_to_the_lake(models, tmp_path):
    """The bound holds even for one request: a batch of 50 with room for 40 in memory is spilled by the request
    itself, and the writer brings it to the lake."""
    from servers import serve

    lake, spill = Lake((tmp_path / "lake").as_uri()), tmp_path / "spill"
    store = ModelStore(lambda: ({"champion": "1", "challenger": None}, 0.0), lambda v: models[v])
    app = create_app(
        store, lake, refresh_s=60, flush_rows=100, flush_s=0.2, log_max_rows=40, spill_dir=spill, log_retry_s=0.3
    )
    with serve(app) as url:
        sent = _load(url, requests_for(DAY), seconds=0.5)
        rows = sum(n for _, n in sent)
        h = _wait(url, lambda h: h["logged"] == rows and h["spilled_log"] == 0)
        assert h["log_peak_pending"] == 0 and h["log_lake_failures"] == 0, h
    log = logged_rows(lake)
    assert len(log) == rows and not log.duplicated(["request_id", "flight_key"]).any()


def test_when_the_lake_and_the_local_disk_both_refuse_requests_still_succeed_and_losses_are_counted(models, tmp_path):
    """The last resort: with nowhere to put records, the service still answers every request, keeps at most the
    bound in memory, counts what it had to drop (/health log_lost), and writes the rest once the lake is back."""
    from servers import serve

    root = tmp_path / "lake"
    root.mkdir()
    lake, spill, refusal = Lake(root.as_uri()), tmp_path / "spill", Refusal(root)
    refusal.on()
    with serve(_app(models, lake, spill)) as url:
        spill.rmdir()
        spill.write_text("the local disk refuses too")
        sent = _load(url, requests_for(DAY), seconds=1.5)  # every request answered 200 (asserted in _load)
        rows = sum(n for _, n in sent)
        time.sleep(1.0)
        h = httpx.get(url + "/health").json()
        assert h["pending_log"] <= MAX_ROWS and h["log_lost"] > 0 and h["logged"] == 0, h
        refusal.off()
        spill.unlink()
        spill.mkdir()
        h = _wait(url, lambda h: h["pending_log"] == 0 and h["logged"] + h["log_lost"] == rows)
    assert len(logged_rows(lake)) == h["logged"] > 0


def test_one_flight_date_the_lake_refuses_holds_back_no_other(tmp_path):
    """The lake refuses one flight date (a plain file where its folder should be: refused even for root): the
    other date's records reach the lake within a second or two while the refused one stays spilled; /health says
    "degraded" (200) with the spill and the date, monitoring's check of /metrics raises its prediction_log signal;
    once the date's folder can be made, its records are written, each once."""
    from servers import serve
    from tiny_models import tiny_served

    from include.mlops.monitor import service

    models = {"1": tiny_served("1", 0)}  # what a model learnt does not matter here
    root = tmp_path / "lake"
    blocker = root / layout.predictions("2013-01-23")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    lake, spill = Lake(root.as_uri()), tmp_path / "spill"
    day, stuck = requests_for("2013-01-22"), requests_for("2013-01-23")
    sent = []
    with serve(_app(models, lake, spill)) as url, httpx.Client(base_url=url, timeout=30) as c:
        for i in range(6):  # each batch holds both dates; the later ones come after the first refusal
            r = c.post("/predict/batch", json={"flights": day[i * 50 : (i + 1) * 50] + stuck[i * 50 : (i + 1) * 50]})
            assert r.status_code == 200, r.text[:300]
            sent.append(r.json()["request_id"])
            time.sleep(0.25)
        h = _wait(url, lambda h: h["logged"] == 300 and h["pending_log"] == 0, timeout=3)
        assert h["spilled_log"] == 300 and h["log_lake_failures"] >= 1 and h["log_lost"] == 0, h
        assert h["status"] == "degraded" and h["log_refused_dates"] == ["2013-01-23"], h
        assert any("2013-01-23" in r for r in h["reasons"]) and any("300 prediction record" in r for r in h["reasons"])
        assert logged_rows(lake)["flight_key"].str[:10].unique().tolist() == ["2013-01-22"]
        check = service.check(
            Lake((tmp_path / "monitoring").as_uri()),
            {"min_requests": 20, "log_spilled": 0, "log_lake_failures": 0, "log_lost": 0},
            env={"MLOPS_SERVE_URL": url},
        )
        assert check["log_spilled"] == 300 and check["log_lake_failures"] >= 1 and check["log_lost"] == 0, check
        assert check["alert"] and check["signals"]["prediction_log"] and len(check["reasons"]) == 2, check
        blocker.unlink()  # the date's folder can be made again: written at its next retry
        h = _wait(url, lambda h: h["logged"] == 600 and h["spilled_log"] == 0, timeout=10)
        assert h["status"] == "ok" and h["reasons"] == [] and h["log_refused_dates"] == [], h
    log = logged_rows(lake)
    assert len(log) == 600 and not log.duplicated(["request_id", "flight_key"]).any()
    assert log["flight_key"].str[:10].value_counts().to_dict() == {"2013-01-22": 300, "2013-01-23": 300}
    assert set(log["request_id"]) == set(sent) and not list(spill.glob("*spill*"))
