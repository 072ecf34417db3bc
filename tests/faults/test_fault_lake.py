"""Faults in the lake: writes cut off, a writer killed mid-write, readers hammering a partition while it is
rewritten, unsafe paths (a run id of ``.``), dates with trailing text. Each test injects the fault and asserts
the safe outcome: nothing lost, nothing torn visible, nothing outside the lake touched."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from include.mlops.core import lake as lake_module
from include.mlops.core import layout
from include.mlops.core.lake import Lake, UnsafePath, as_date, run_key

ROOT = Path(__file__).resolve().parents[2]
FOLDER = "curated/flights/date=2013-01-02"
FILE = "part-00000.parquet"


@pytest.fixture
def lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def table(value: int, rows: int = 20_000) -> pd.DataFrame:
    """A partition whose every row carries ``value``: a reader can tell old from new, and whole from mixed."""
    return pd.DataFrame({"v": [value] * rows, "x": range(rows)})


def on_disk(lake: Lake, folder: str) -> list[str]:
    """Every name in the folder on disk, hidden ones included."""
    return sorted(os.listdir(lake.path(folder)))


# --------------------------------------------------------------------------------------- writes cut short
class _CutOff(io.RawIOBase):
    """A file that takes ``limit`` bytes, then fails as a full disk does."""

    def __init__(self, real, limit: int):
        self.real, self.limit, self.n = real, limit, 0

    def write(self, data) -> int:
        room = self.limit - self.n
        if len(data) > room:
            self.real.write(bytes(data[:room]))
            self.n = self.limit
            raise OSError(errno.ENOSPC, "No space left on device")
        self.n += len(data)
        return self.real.write(data)

    def flush(self):
        if not self.real.closed:
            self.real.flush()

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()
        super().close()


@pytest.mark.parametrize("cut_at", [0, 100, 5_000])
def test_a_rewrite_cut_off_at_n_bytes_leaves_the_old_partition_whole(lake, monkeypatch, cut_at):
    lake.replace_partition(table(1), FOLDER, FILE)
    before = lake.read_bytes(FOLDER, FILE)

    def full_disk(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        return _CutOff(fh, cut_at) if "w" in mode else fh

    monkeypatch.setattr(lake_module, "open", full_disk, raising=False)
    with pytest.raises(OSError, match="No space left"):
        lake.replace_partition(table(2), FOLDER, FILE)
    monkeypatch.undo()
    assert lake.read_bytes(FOLDER, FILE) == before  # the old partition, byte for byte
    assert lake.ls(FOLDER) == [FILE] and on_disk(lake, FOLDER) == [FILE]  # no torn file, no temporary left
    assert (lake.read_parquet(FOLDER, FILE)["v"] == 1).all()


WRITER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
import pandas as pd
from include.mlops.core import lake as m
real_fsync = os.fsync
def stall(fd):          # the data is written; the process is killed before it is renamed into place
    print("WRITING", flush=True)
    time.sleep(600)
m.os.fsync = stall
lake = m.Lake(sys.argv[2])
lake.replace_partition(pd.DataFrame({"v": [2] * 20000, "x": range(20000)}), sys.argv[3], "part-00000.parquet")
"""


def test_a_writer_killed_mid_write_leaves_the_old_partition_and_nothing_visible(lake):
    lake.replace_partition(table(1), FOLDER, FILE)
    before = lake.read_bytes(FOLDER, FILE)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ROOT), lake.url, FOLDER], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "WRITING"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert lake.read_bytes(FOLDER, FILE) == before
    assert lake.ls(FOLDER) == [FILE]  # readers never list the temporary
    hidden = [n for n in on_disk(lake, FOLDER) if n != FILE]
    assert len(hidden) == 1 and hidden[0].startswith(".")  # the killed write's leftover is hidden
    lake.replace_partition(table(3), FOLDER, FILE)  # and does not get in the way of the next write
    assert (lake.read_parquet(FOLDER, FILE)["v"] == 3).all()


def test_readers_hammering_a_partition_rewritten_50_times_see_only_whole_old_or_new_content(lake):
    """Kills: writes at the final path (61 of 712 reads failed with torn files before)."""
    lake.replace_partition(table(0), FOLDER, FILE)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def reader():
        while not stop.is_set():
            try:
                names = lake.ls(FOLDER)
                assert names == [FILE], names
                v = lake.read_parquet(FOLDER, FILE)["v"]
                assert v.nunique() == 1 and len(v) == 20_000
                seen.append(int(v.iloc[0]))
            except Exception as exc:  # noqa: BLE001 - every failure counts
                errors.append(f"{type(exc).__name__}: {exc}")

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(1, 51):
        lake.replace_partition(table(i), FOLDER, FILE)
    stop.set()
    for t in readers:
        t.join(30)
    assert errors == []
    assert len(seen) >= 50 and set(seen) <= set(range(51))
    assert (lake.read_parquet(FOLDER, FILE)["v"] == 50).all()


def test_monitoring_never_counts_a_partition_still_being_written_as_settled(lake):
    """A partition whose only file is still being written does not exist for readers."""
    from include.mlops.core.lake import TEMP_PREFIX

    os.makedirs(lake.path(FOLDER))
    Path(lake.path(FOLDER), f"{TEMP_PREFIX}{FILE}.abc.tmp").write_bytes(b"PAR1 torn")
    assert not lake.exists(FOLDER, FILE) and lake.ls(FOLDER) == []


# ----------------------------------------------------------------------------------------- unsafe paths
@pytest.mark.parametrize(
    "parts",
    [
        ("training", ""),
        ("training/",),
        ("training", "."),
        ("training", ".."),
        ("training/../..",),
        ("/etc/passwd",),
        ("curated", "flights/../../x"),
    ],
)
def test_unsafe_lake_paths_are_refused(lake, parts):
    for op in (
        lambda: lake.path(*parts),
        lambda: lake.rm(*parts),
        lambda: lake.write_bytes(b"x", *parts),
        lambda: lake.uri(*parts),
    ):
        with pytest.raises(UnsafePath):
            op()


def test_a_run_id_of_dot_cannot_delete_every_training_run(lake, tmp_path):
    """Kills: run key "." staged into training/. and deleted all of training/."""
    from include.mlops.train import pipeline

    lake.write_bytes(b"model", "training/earlier-run/model.txt")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    lake.write_bytes(b"day", "curated/flights/date=2013-01-02/part-00000.parquet")
    for key in (".", "..", "", "a/b", "../outside", "/tmp"):
        with pytest.raises(UnsafePath):
            pipeline.build_training_set(lake, key, 14, 1)
    assert lake.read_bytes("training/earlier-run/model.txt") == b"model"
    assert outside.read_text() == "keep"
    for run_id in (".", ":", "+", "", ":+:"):
        with pytest.raises(UnsafePath):
            run_key(run_id)
    assert run_key("manual__2013-01-02T00:00:00+00:00") == "manual__2013-01-02T0000000000"


def test_a_data_set_name_cannot_leave_its_zone():
    for name in ("../reports", "a/b", "", "."):
        with pytest.raises((UnsafePath, ValueError)):
            layout.partition("curated", name, "2013-01-02")


def test_removing_the_whole_lake_is_refused(lake):
    lake.write_bytes(b"x", "reports/r.json")
    with pytest.raises(UnsafePath):
        lake.rm()
    assert lake.exists("reports/r.json")


@pytest.mark.parametrize(
    "text", ["2013-01-02garbage", "2013-01-02 ; rm", "2013-1-2", "20130102", "2013-01-32", "yesterday", ""]
)
def test_dates_with_trailing_text_are_refused(text):
    with pytest.raises(ValueError, match="not a date"):
        as_date(text)


def test_dates_and_timestamps_are_read():
    assert as_date("2013-01-02") == as_date("2013-01-02T00:00:00+00:00") == as_date("2013-01-02T05:00:00Z")
    assert str(as_date(" 2013-01-02 ")) == "2013-01-02"


def test_a_read_that_races_a_rewrite_never_sees_an_empty_partition(lake):
    """Between the old partition and the new, the folder is never empty and its file never missing."""
    lake.replace_partition(table(1), FOLDER, FILE)
    misses = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if not lake.exists(FOLDER, FILE):
                misses.append(time.monotonic())

    t = threading.Thread(target=watch)
    t.start()
    for i in range(30):
        lake.replace_partition(table(i), FOLDER, FILE)
    stop.set()
    t.join(10)
    assert misses == []
