"""The prediction log's writer process (``serve.logwriter``): a writer that crashes loses nothing (the service
spills what it had not finished, says so, counts it and starts a new writer, which writes the spill to the lake,
each record once), and a writer never outlives its service: killed with SIGKILL, the service leaves a writer
that writes what it was sent and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd

from include.mlops.core import layout
from include.mlops.core.lake import Lake
from include.mlops.serve.app import PredictionLog

ROOT = Path(__file__).resolve().parents[2]


def _records(n: int, tag: str) -> list[dict]:
    return [
        {
            "request_id": f"{tag}{i // 10}",
            "flight_key": f"2013-01-{22 + i % 2}/UA/{i}/EWR",
            "flight_date": f"2013-01-{22 + i % 2}",
            "score": i / n,
            "version": "1",
            "arm": "champion",
            "predicted_at": "2026-11-28T00:00:00+00:00",
        }
        for i in range(n)
    ]


def _logged(lake: Lake) -> pd.DataFrame:
    parts = [
        lake.read_parquet(layout.predictions(d), f)
        for d in lake.partitions(layout.PREDICTIONS)
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
    log = PredictionLog(lake, flush_rows=10_000, flush_s=60, spill_dir=tmp_path / "spill", retry_s=0.3)
    try:
        first = log._proc.pid
        log.put(_records(300, "a"))
        _until(lambda: log._unacked)  # sent to the writer, which holds it (its flush is a minute away)
        assert log.pending == 300 and log.written == 0
        os.kill(first, signal.SIGKILL)
        _until(lambda: log.writer_crashes == 1 and log.pending == 0)
        assert log.spilled_total == 300 and log.lost == 0  # spilled by the service itself
        assert "writer exited" in caplog.text
        _until(lambda: log._proc is not None and log._proc.pid != first)  # a new writer ...
        _until(lambda: log.written == 300 and log.spilled == 0)  # ... writes the spill to the lake
        log.put(_records(20, "b"))
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
        from include.mlops.serve.app import PredictionLog
        from test_serving_log_writer import _records
        log = PredictionLog(Lake({lake_url!r}), flush_rows=10_000, flush_s=60, spill_dir={str(tmp_path / "spill")!r})
        log.put(_records(100, "k"))
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
    log = PredictionLog(lake, flush_rows=1, flush_s=0.1, spill_dir=spill, retry_s=0.3)
    try:
        log.put(_records(100, "p"))  # 50 flights of the 22nd, 50 of the 23rd
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
