"""The demo driver's own parts, without Airflow: the window it accepts (inside 2013) and how it stops a process
group that ignores SIGTERM (the canary's `airflow dags test` does)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_driver", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_any_window_inside_2013(demo):
    days = demo.source_window("2013-07-01", "2013-10-31", False)
    assert (str(days[0]), str(days[-1]), len(days)) == ("2013-07-01", "2013-10-31", 123)
    assert len(demo.source_window("2013-12-30", "2013-12-30", False)) == 1
    fast = demo.source_window("2013-12-10", None, True)  # six weeks, cut at the data's end
    assert str(fast[-1]) == "2013-12-30"


@pytest.mark.parametrize(
    "start, end, words",
    [
        ("2012-12-31", "2013-01-05", "--start 2012-12-31 is outside the source data"),
        ("2013-12-01", "2014-01-01", "--end 2014-01-01 is outside the source data"),
        ("2013-12-01", "2013-12-31", "--end 2013-12-31 is outside the source data"),  # its weather is missing
        ("2013-03-05", "2013-03-01", "--end 2013-03-01 is before --start 2013-03-05"),
        ("2013-3-5", "2013-03-06", "--start '2013-3-5' is not a date"),
    ],
)
def test_a_window_outside_2013_is_refused_with_exit_2(demo, start, end, words):
    with pytest.raises(ValueError, match=words):
        demo.source_window(start, end, False)
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--start", start, "--end", end],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and words in out.stderr, out.stderr
    assert "Timeline" not in out.stdout


STUBBORN = r"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_group_that_ignores_sigterm_is_killed_whole(demo):
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = int(proc.stdout.readline())
    t0 = time.monotonic()
    assert demo.stop_group(proc, grace_s=1.0) == "killed"
    assert time.monotonic() - t0 < 10
    assert proc.returncode == -9 and not alive(child)


def test_a_group_that_obeys_sigterm_is_stopped(demo):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    assert demo.stop_group(proc, grace_s=10.0) == "stopped" and proc.returncode == -15


def test_a_process_that_ended_is_left_alone(demo):
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait(30)
    assert demo.stop_group(proc, grace_s=1.0) == "ended"
    assert os.getpgid(os.getpid()) != proc.pid
