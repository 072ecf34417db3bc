"""The demo driver on a short window that ends while a canary waits for evidence: it exits 0 with the timeline
and the Slack summary, reports the canary as stopped, and leaves no process behind (`make demo` on any window)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def processes_with(marker: str) -> list[str]:
    """Live processes whose environment holds ``marker`` (this run's MLOPS_HOME): what the run left behind."""
    out = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if (
                marker.encode() in (p / "environ").read_bytes().split(b"\0")
                and (p / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            ):
                cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ")[:200].decode(errors="replace")
                out.append(f"{p.name}: {cmdline}")
        except (OSError, IndexError):
            continue
    return out


def test_a_window_that_ends_while_a_canary_waits(tmp_path):
    home = tmp_path / "home"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MLOPS_CONFIG_DIR", "MLOPS_MODEL_NAME", "MLOPS_SERVE_URL", "MLFLOW_TRACKING_URI")
    }
    env |= {"MLOPS_HOME": str(home), "AIRFLOW_HOME": str(home / "airflow")}
    airflow = str(Path(sys.executable).parent / "airflow")
    (home / "airflow").mkdir(parents=True)
    for cmd in ([airflow, "db", "migrate"], [airflow, "pools", "set", "horovod", "1", "horovod"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]

    t0 = time.monotonic()
    # the shortest window with a canary: the first model on the third day, drift at once, the canary started, the
    # window over; the canary is given no time to decide and 3 s after SIGTERM
    args = ["--start", "2013-01-01", "--end", "2013-01-03", "--early-canary", "--canary-wait", "0", "--stop-grace", "3"]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError("the driver ran past 9 minutes:\n" + out[-4000:]) from None
    took = time.monotonic() - t0
    (ROOT / "test-output" / "demo_window.txt").write_text(out)

    assert proc.returncode == 0, out[-4000:]
    assert "== Timeline (3 days" in out and "Slack messages (" in out, out[-4000:]
    timeline = out.split("== Timeline", 1)[1]
    assert " canary     v2    started at the shadow stage" in timeline, timeline
    stopped = [ln for ln in timeline.splitlines() if "still waiting for evidence when the replay ended" in ln]
    assert len(stopped) == 1 and ": stopped, its process group " in stopped[0], timeline
    assert "Traceback" not in out and "TimeoutExpired" not in out
    assert processes_with(f"MLOPS_HOME={home}") == []
    print(f"demo on 3 days with a canary stopped at the end: {took:.0f} s")
