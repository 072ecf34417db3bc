"""`make up` (scripts/up.sh, airflow standalone) as a newcomer starts it: on an empty lake it says how to publish
drops, it prints where the UI is, its api-server listens on 127.0.0.1 only (the README says localhost), not on
every address of the machine, and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from deploy_support import ROOT, free_port


def _listening(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    }


def test_make_up_listens_on_localhost_and_says_how_to_publish_drops(tmp_path):
    home = tmp_path / "mlops"
    port = free_port()
    venv_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "MLOPS_"))}
    env |= {  # what the Makefile exports, and a free port for each server of the standalone
        "PATH": f"{venv_bin}:{env.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "MLOPS_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GX_ANALYTICS_ENABLED": "false",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "up.sh")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,
        )
    sessions = {proc.pid}  # up.sh's own, and the one it starts standalone in
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"up.sh ended ({proc.returncode}):\n" + log.read_text()[-3000:]
            sessions |= {_sid(c) for c in psutil.Process(proc.pid).children()} - {None}
            if _listening(port) and "Airflow UI:" in log.read_text():
                break
            time.sleep(2)
        else:
            raise AssertionError("the UI did not come up in 300 s:\n" + log.read_text()[-3000:])
        assert _listening(port) == {"127.0.0.1"}, _listening(port)  # not 0.0.0.0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        text = log.read_text()
        assert f"Airflow UI: http://localhost:{port}   login: admin   password: " in text
        assert "holds no drop yet" in text and "python -m include.mlops.ingest.upstream publish 2013-01-01" in text
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: SIGINT to the whole foreground group
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 30
        while _in_sessions(sessions) and time.monotonic() < deadline:
            time.sleep(1)
        survivors = {p.pid: " ".join(p.cmdline())[:200] for p in _in_sessions(sessions)}
        for sid in sessions:  # never leave anything behind
            try:
                os.killpg(sid, signal.SIGKILL)
            except OSError:
                pass
    assert proc.returncode is not None, "up.sh still ran 90 s after Ctrl-C"
    assert not survivors, f"processes left after Ctrl-C: {survivors}"


def _sid(p: psutil.Process) -> int | None:
    try:
        return os.getsid(p.pid)
    except OSError:
        return None


def _in_sessions(sids: set[int]) -> list[psutil.Process]:
    """The live processes of these sessions."""
    out = []
    for p in psutil.process_iter():
        try:
            if _sid(p) in sids and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out
