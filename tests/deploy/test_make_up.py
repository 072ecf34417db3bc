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
import pytest
from deploy_support import ROOT, free_port


def _listening(port: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    }


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _up(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen, Path, int, set[int]]:
    """scripts/up.sh started as `make up` starts it, in a session of its own; its log, port and sessions."""
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
    } | extra
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
            # Ctrl-C as a terminal delivers it: a suite started in the background of a non-interactive shell
            # inherits SIGINT ignored, and so would up.sh and airflow standalone
            preexec_fn=_default_sigint,
        )
    return proc, log, port, {proc.pid}  # up.sh's own session, and (later) the one it starts standalone in


def _wait_until(proc, log: Path, sessions: set[int], what: str, done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"up.sh ended ({proc.returncode}):\n" + log.read_text()[-3000:]
        sessions |= {_sid(c) for c in psutil.Process(proc.pid).children()} - {None}
        if done():
            return
        time.sleep(2)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s:\n" + log.read_text()[-3000:])


def _ctrl_c(proc, sessions: set[int]) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole foreground group); then nothing of it may be left."""
    os.killpg(proc.pid, signal.SIGINT)
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


def test_make_up_listens_on_localhost_and_says_how_to_publish_drops(tmp_path):
    proc, log, port, sessions = _up(tmp_path)
    try:
        _wait_until(proc, log, sessions, "the UI", lambda: _listening(port) and "Airflow UI:" in log.read_text(), 300)
        assert _listening(port) == {"127.0.0.1"}, _listening(port)  # not 0.0.0.0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        text = log.read_text()
        assert f"Airflow UI: http://localhost:{port}   login: admin   password: " in text
        assert "holds no drop yet" in text and "python -m include.mlops.simulate.upstream publish 2013-01-01" in text
    finally:
        _ctrl_c(proc, sessions)


def test_make_replay_starts_the_replay_without_any_other_command(tmp_path):
    """`make replay`'s settings on `make up`: the DAGs unpaused at creation, simulate_upstream on the window's
    daily schedule, the prediction service beside Airflow with a generated token; the scheduler publishes and
    ingests the window's day with nobody doing anything, and Ctrl-C stops the service too."""
    import httpx

    from include.mlops.core.lake import Lake

    serve_port = free_port()
    proc, log, port, sessions = _up(
        tmp_path,
        MLOPS_REPLAY="true",
        MLOPS_START_DATE="2013-01-01",
        MLOPS_END_DATE="2013-01-01",  # one day: a second would only repeat it
        MLOPS_CATCHUP="true",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        MLOPS_SENSOR_POKE_S="2",
        MLOPS_RETRY_DELAY_S="1",
        MLOPS_SERVE_PORT=str(serve_port),
    )
    home = tmp_path / "mlops"
    lake = Lake((home / "lake").as_uri())
    try:
        _wait_until(
            proc,
            log,
            sessions,
            "the day published and curated by the scheduler alone",
            lambda: lake.exists("curated/flights/date=2013-01-01", "part-00000.parquet"),
            420,
        )
        text = log.read_text()
        assert "replay of 2013-01-01 .. 2013-01-01: prediction service at http://127.0.0.1:" in text
        token = (home / "secrets" / "serve_token").read_text().strip()
        assert len(token) >= 32 and token not in text
        assert (home / "secrets" / "serve_token").stat().st_mode & 0o077 == 0
        health = httpx.get(f"http://127.0.0.1:{serve_port}/health", timeout=10)
        assert health.status_code == 200, health.text  # no model yet, but up and answering
        # nothing outside the window was published or ingested (no run for a later day, nor for today)
        assert sorted(p.name for p in (home / "lake" / "curated" / "flights").iterdir()) == ["date=2013-01-01"]
    finally:
        _ctrl_c(proc, sessions)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{serve_port}/health", timeout=5)


def test_ctrl_c_ends_a_standalone_whose_shutdown_hangs(tmp_path):
    """An ``airflow standalone`` that does not stop on SIGINT (its shutdown hung twice on a loaded machine, as
    Ctrl-C came while asset-triggered runs were starting their tasks): after ``MLOPS_STOP_GRACE_S`` up.sh
    terminates its whole process group, so Ctrl-C still ends everything it started."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "airflow").write_text(
        "#!/usr/bin/env bash\n"
        "trap '' INT  # a shutdown that never comes\n"
        'mkdir -p "$AIRFLOW_HOME"; echo \'{"admin": "x"}\' > "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"\n'
        "sleep 600 &\n"
        "wait\n"
    )
    (fake / "airflow").chmod(0o755)
    proc, log, _, sessions = _up(
        tmp_path, MLOPS_STOP_GRACE_S="2", PATH=f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    _wait_until(proc, log, sessions, "the UI's address", lambda: "Airflow UI:" in log.read_text(), 60)
    started = time.monotonic()
    _ctrl_c(proc, sessions)
    assert time.monotonic() - started < 30
    assert "still running 2 s after Ctrl-C: terminating its processes" in log.read_text()


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
