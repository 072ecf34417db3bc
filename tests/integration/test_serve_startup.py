"""`make serve`'s first-run messages (``python -m include.mlops.serve.app``, a real process on a real port): it
says which registry and lake it reads, refuses a MLOPS_HOME without an MLflow store instead of creating an empty
one, with a store but no model says how to get one, refuses a token shorter than the rule or a server limit that
is not a number before it starts anything, and never writes a query string (a token sent there) to its log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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
    token = "t0ken-of-the-service-0123456789abcdef"
    secret = "SECRET-sent-in-a-query-string-0123456789"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "include.mlops.serve.app"],
            env=_env(home, MLOPS_SERVE_PORT=str(port), MLOPS_SERVE_TOKEN=token),
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
        url = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{url}/predict?token={secret}", content=b"{}").status_code == 401  # refused ...
        assert httpx.get(f"{url}/health?token={secret}&x=1").status_code == 200
        # the scheme in lower case is the bearer scheme: past the token, to the body's check
        lower = {"authorization": f"bearer {token}"}
        assert httpx.post(f"{url}/predict", content=b"{}", headers=lower).status_code == 422
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    text = log.read_text()
    assert f"registry: sqlite:///{home / 'mlflow' / 'mlflow.db'}" in text
    assert f"lake: {(home / 'lake').as_uri()}" in text
    assert "NO MODEL" in text and "make demo" in text and "train_model" in text
    assert f"serving on http://127.0.0.1:{port}" in text
    assert "connections: at most 1000 open (MLOPS_SERVE_MAX_CONNECTIONS" in text
    assert '"POST /predict?[query redacted] HTTP/1.1" 401' in text  # ... and its query is not in the access log
    assert '"GET /health?[query redacted] HTTP/1.1" 200' in text
    assert secret not in text and token not in text


@pytest.mark.parametrize(
    "setting, message",
    [
        (
            {"MLOPS_SERVE_TOKEN": "s3cret"},
            "the prediction service's token (MLOPS_SERVE_TOKEN) is too short (6 characters, need at least 32)",
        ),
        ({"MLOPS_SERVE_HEADER_TIMEOUT_S": "ten"}, "MLOPS_SERVE_HEADER_TIMEOUT_S='ten' is not a number of seconds"),
        ({"MLOPS_SERVE_MAX_CONNECTIONS": "0"}, "MLOPS_SERVE_MAX_CONNECTIONS='0' is not a whole number above 0"),
        ({"MLOPS_SERVE_MAX_CONNECTIONS": "99999999"}, "MLOPS_SERVE_MAX_CONNECTIONS=99999999 leaves fewer than 256"),
    ],
)
def test_a_short_token_or_a_bad_limit_is_refused_before_anything_starts(tmp_path, setting, message):
    out = subprocess.run(
        [sys.executable, "-m", "include.mlops.serve.app"],
        env=_env(tmp_path / "home", **setting),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]
    assert "did not start" in out.stderr and "registry:" not in out.stderr  # refused before the registry is read
    assert setting.get("MLOPS_SERVE_TOKEN", "not-in-the-log") not in out.stderr
