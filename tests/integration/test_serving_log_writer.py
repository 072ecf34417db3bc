"""The prediction log's writer process (``serve.logwriter``): a writer that crashes loses nothing (the service
spills what it had not finished, says so, counts it and starts a new writer, which writes the spill to the lake,
each record once), and a writer never outlives its service: killed with SIGKILL, the service leaves a writer
that writes what it was sent and exits."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.serve import logwriter, protocol
from include.mlops.serve.logclient import PredictionLog
from include.mlops.serve.protocol import Frame, Logged
from include.mlops.serve.request import RequestModel

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = RequestModel()


def _request(n: int, tag: str) -> Logged:
    """A request of ``n`` flights (half of them on the 22nd, half on the 23rd), decoded and answered as the service
    does, with ``tag`` for its id."""
    flights = [
        {
            "year": 2013,
            "month": 1,
            "day": 22 + i % 2,
            "carrier": "UA",
            "flight": i + 1,
            "origin": "EWR",
            "dest": "ORD",
            "sched_dep_time": 900,
            "sched_arr_time": 1100,
            "distance": 719.0,
            "time_hour": f"2013-01-{22 + i % 2}T14:00:00Z",
        }
        for i in range(n)
    ]
    decoded = REQUESTS.decode_batch(msgspec.json.encode({"flights": flights}))
    scores = (np.arange(n) / n).tobytes()
    return Logged(tag, "2026-11-28T00:00:00+00:00", decoded.flights, decoded.keys, scores, ["1"] * n, ["champion"] * n)


def _records(n: int, tag: str) -> list[dict]:
    """The records of such a request, as the log spills them."""
    return protocol.records(Frame(0, REQUESTS.logged, [_request(n, tag)]))


def _logged(lake: Lake) -> pd.DataFrame:
    parts = [
        lake.read_parquet(layout.predictions(d), f)
        for d in layout.partitions(lake, layout.prediction_log())
        for f in lake.ls(layout.predictions(d))
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["flight_key"])


def _until(cond, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("not reached")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_a_crashed_writer_loses_nothing_and_is_replaced(tmp_path, caplog):
    lake = Lake((tmp_path / "lake").as_uri())
    log = PredictionLog(lake, REQUESTS.logged, flush_rows=10_000, flush_s=60, spill_dir=tmp_path / "spill", retry_s=0.3)
    try:
        first = log._proc.pid
        log.put(_request(300, "a"))
        _until(lambda: log._unacked)  # sent to the writer, which holds it (its flush is a minute away)
        assert log.pending == 300 and log.written == 0
        os.kill(first, signal.SIGKILL)
        _until(lambda: log.writer_crashes == 1 and log.pending == 0)
        assert log.spilled_total == 300 and log.lost == 0  # spilled by the service itself
        assert "writer exited" in caplog.text
        _until(lambda: log._proc is not None and log._proc.pid != first)  # a new writer ...
        _until(lambda: log.written == 300 and log.spilled == 0)  # ... writes the spill to the lake
        log.put(_request(20, "b"))
    finally:
        log.close()
    assert log.written == 320 and log.lost == 0 and log.pending == 0
    rows = _logged(lake)
    assert len(rows) == 320 and not rows.duplicated(["request_id", "flight_key"]).any()
    assert not list((tmp_path / "spill").glob("*spill*"))


def test_the_writer_dies_with_the_service_and_writes_what_it_was_sent(tmp_path):
    lake_url = (tmp_path / "lake").as_uri()
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(ROOT / "tests" / "integration")!r})
        from include.mlops.core.lake import Lake
        from include.mlops.serve.logclient import PredictionLog
        from test_serving_log_writer import REQUESTS, _request
        log = PredictionLog(
            Lake({lake_url!r}), REQUESTS.logged, flush_rows=10_000, flush_s=60, spill_dir={str(tmp_path / "spill")!r}
        )
        log.put(_request(100, "k"))
        while not log._unacked:  # registered, then written to the pipe: give the write a moment
            time.sleep(0.05)
        time.sleep(0.5)
        print(log._proc.pid, flush=True)
        time.sleep(600)
        """
    )
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        writer = int(service.stdout.readline())
        assert _alive(writer)
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        deadline = time.time() + 30
        while _alive(writer) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(writer), "the writer outlived the service"
    finally:
        if service.poll() is None:
            service.kill()
    rows = _logged(Lake(lake_url))
    assert len(rows) == 100 and not rows.duplicated(["flight_key"]).any()


def test_a_writer_killed_after_writing_some_dates_of_a_frame_writes_none_twice(tmp_path):
    """The writer says which (frame, flight date) parts it has done: a frame it wrote one date of before dying is
    spilled by the service without that date."""
    root, spill = tmp_path / "lake", tmp_path / "spill"
    blocker = root / layout.predictions("2013-01-23")  # the lake refuses this date only
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    spill.write_text("the local disk refuses too")  # so that the writer keeps that date in memory
    lake = Lake(root.as_uri())
    log = PredictionLog(lake, REQUESTS.logged, flush_rows=1, flush_s=0.1, spill_dir=spill, retry_s=0.3)
    try:
        log.put(_request(100, "p"))  # 50 flights of the 22nd, 50 of the 23rd
        _until(lambda: log.written == 50 and log._parts)  # the 22nd written, the 23rd held by the writer
        writer = log._proc.pid
        os.kill(writer, signal.SIGSTOP)  # frozen while the local disk comes back, then killed
        spill.unlink()
        spill.mkdir()
        os.kill(writer, signal.SIGKILL)
        _until(lambda: log.writer_crashes == 1 and log.pending == 0)
        assert log.spilled_total == 50 and log.lost == 0  # the 23rd only
        blocker.unlink()
        _until(lambda: log.written == 100 and log.spilled == 0)
    finally:
        log.close()
    rows = _logged(lake)
    assert len(rows) == 100 and not rows.duplicated(["request_id", "flight_key"]).any()


# the writer in this process: one flight date the lake refuses, the spill folder's modes -------------------------
STUCK = "2013-01-23"  # _request: half of the flights on the 22nd, half on the 23rd


def _stuck_lake(tmp_path) -> tuple[Lake, Path]:
    """A lake that refuses the 23rd only: a plain file where its folder should be (refused even for root)."""
    root = tmp_path / "lake"
    blocker = root / layout.predictions(STUCK)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    return Lake(root.as_uri()), blocker


def _columns(n: int, tag: str, seq: int) -> pd.DataFrame:
    """A request's records as the writer takes them from frame ``seq``."""
    return pd.DataFrame(protocol.columns(Frame(seq, REQUESTS.logged, [_request(n, tag)])))


def test_a_date_the_lake_refuses_holds_back_no_other_date(tmp_path):
    """Flush after flush, the 22nd goes to the lake at once while the 23rd, refused, is spilled to files of its
    own; once the lake takes the 23rd (after its retry wait), it is written, each record once."""
    lake, blocker = _stuck_lake(tmp_path)
    # a retry wait the three flushes never outlast, even on a loaded machine (0.3 s once let them retry twice)
    w = logwriter.Writer(lake, tmp_path / "spill", retry_s=2.0)
    done: list = []
    for i in range(3):  # one right after the other: the 23rd's refusal must not hold the 22nd's next flush
        assert w.flush(_columns(100, f"f{i}", i), lambda seqs, date: done.append((seqs, date))) is None
    assert w.written == 150 and w.spilled_total == 150 and w.lake_failures == 1, w.counters  # one try, then waits
    assert w.refusing == [STUCK] and sorted(done) == sorted([([i], d) for i in range(3) for d in ("2013-01-22", STUCK)])
    assert {protocol.spilled(f.name).date for f in w.spill_files()} == {STUCK}
    assert len(_logged(lake)) == 150
    blocker.unlink()
    w.recover()  # the 23rd is still waiting for its retry: not tried yet
    assert w.written == 150 and len(w.spill_files()) == 3
    time.sleep(2.05)
    w.recover()
    assert w.written == 300 and not w.spill_files() and w.refusing == []
    rows = _logged(lake)
    assert len(rows) == 300 and not rows.duplicated(["request_id", "flight_key"]).any()


def test_the_replay_of_spilled_files_skips_a_refused_date_instead_of_stopping(tmp_path):
    """The oldest spilled file is of the refused date: the newer files of other dates are written all the same, a
    file of several dates (as an older version spilled) is split, and nothing is written twice."""
    lake, blocker = _stuck_lake(tmp_path)
    spill = tmp_path / "spill"
    w = logwriter.Writer(lake, spill, retry_s=0.3)
    records = _records(100, "s")
    stuck = [r for r in records if r["flight_date"] == STUCK]
    other = [r for r in records if r["flight_date"] != STUCK]
    w.spill(stuck[:20])  # the oldest file: the 23rd
    time.sleep(0.002)
    w.spill(other[:30])  # then the 22nd
    mixed = spill / "spill-20000101T000000000000-0123abcd-rows50.jsonl"  # a file of both dates, of an older version
    mixed.write_bytes(b"\n".join(msgspec.json.encode(r) for r in other[30:] + stuck[20:]))
    w.recover()
    assert w.written == 50 and w.refusing == [STUCK]  # the 22nd: its own file and its part of the mixed one
    left = w.spill_files()
    assert {protocol.spilled(f.name).date for f in left} == {STUCK}
    assert sorted(len(f.read_bytes().splitlines()) for f in left) == [20, 30]  # the 23rd, each record once
    blocker.unlink()
    time.sleep(0.35)
    w.recover()
    assert w.written == 100 and not w.spill_files()
    rows = _logged(lake)
    assert len(rows) == 100 and not rows.duplicated(["request_id", "flight_key"]).any()


def test_a_refused_date_is_retried_with_backoff(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(logwriter.time, "monotonic", lambda: clock[0])
    w = logwriter.Writer(Lake((tmp_path / "lake").as_uri()), tmp_path / "spill", retry_s=0.5)
    waits = []
    for _ in range(8):
        assert w.due(STUCK)
        w.refused(STUCK, OSError("refused"))
        start = clock[0]
        while not w.due(STUCK):
            clock[0] += 0.25
        waits.append(clock[0] - start)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]  # doubling, at most BACKOFF retry_s
    assert w.due("2013-01-22") and w.lake_failures == 8  # another date: never waits for this one


def test_the_spill_folder_and_its_files_are_private_whatever_the_umask(tmp_path):
    """Spilled records hold the requests' features: the folder 0700 (narrowed when it exists wider), files 0600."""
    spill = tmp_path / "spill"
    spill.mkdir(mode=0o755)
    spill.chmod(0o755)
    before = os.umask(0)
    try:
        w = logwriter.Writer(Lake((tmp_path / "lake").as_uri()), spill)
        w.spill(_records(10, "u"))
        fresh = tmp_path / "new" / "spill"
        logwriter.Writer(Lake((tmp_path / "lake").as_uri()), fresh)
    finally:
        os.umask(before)
    assert stat.S_IMODE(spill.stat().st_mode) == 0o700 and stat.S_IMODE(fresh.stat().st_mode) == 0o700
    files = w.spill_files()
    assert len(files) == 2 and {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
