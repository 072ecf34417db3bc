"""`make serve`'s first-run messages (``python -m include.mlops.serve.app``, a real process on a real port): it
says which registry and lake it reads, refuses a MLOPS_HOME without an MLflow store instead of creating an empty
one, and with a store but no model says how to get one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))}
    return env | {"MLOPS_HOME": str(home), "PYTHONPATH": str(ROOT)} | extra


def test_a_home_without_a_store_is_refused_naming_the_path(tmp_path):
    home = tmp_path / "wrong-home"
    out = subprocess.run(
        [sys.executable, "-m", "include.mlops.serve.app"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert out.returncode != 0
    store = home / "mlflow" / "mlflow.db"
    assert f"no MLflow store at {store}" in out.stderr, out.stderr[-2000:]
    assert "MLOPS_HOME" in out.stderr and "make demo" in out.stderr and "train_model" in out.stderr
    assert f"registry: sqlite:///{store}" in out.stderr and f"lake: {(home / 'lake').as_uri()}" in out.stderr
    assert not store.exists() and not (home / "mlflow").exists()  # nothing created in the wrong place


def test_a_store_without_a_model_starts_and_says_how_to_get_one(tmp_path):
    home = tmp_path / "home"
    made = subprocess.run(
        [sys.executable, "-c", "from include.mlops.core import registry; print(registry.versions())"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert made.returncode == 0 and made.stdout.strip() == "[]", made.stderr[-2000:]  # an empty store
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "include.mlops.serve.app"],
            env=_env(home, MLOPS_SERVE_PORT=str(port)),
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        health = None
        for _ in range(240):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.HTTPError:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
        assert health and health["status"] == "no_model", health
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    text = log.read_text()
    assert f"registry: sqlite:///{home / 'mlflow' / 'mlflow.db'}" in text
    assert f"lake: {(home / 'lake').as_uri()}" in text
    assert "NO MODEL" in text and "make demo" in text and "train_model" in text
    assert f"serving on http://127.0.0.1:{port}" in text
