"""The production-shaped deployment's supervisor: starts the components as separate processes (Airflow's four, the
Celery workers of this host with the CeleryExecutor, and the prediction service), waits until the api-server
reports Airflow's healthy, each local Celery worker answers a ping over the broker and the service answers its
/health, and stops each with the processes it started (SIGTERM, then SIGKILL after the grace period)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prod_config import (  # noqa: E402
    CELERY,
    COMPONENTS,
    ROOT,
    SERVE,
    components,
    executor,
    serve_url,
    serves,
    worker_names,
)


def _airflow(env: dict[str, str]) -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    exe = shutil.which("airflow", path=path)
    if not exe:
        raise SystemExit("airflow is not installed next to this Python or on PATH")
    return exe


def _run_dir(env: dict[str, str]) -> Path:
    d = Path(env["AIRFLOW_HOME"]) / "prod"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _broker_url_for_humans(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


def check_broker(env: dict[str, str], timeout_s: float = 10) -> None:
    """The Celery broker answers (the scheduler and the workers would otherwise retry it forever, silently)."""
    from kombu import Connection

    url = env["AIRFLOW__CELERY__BROKER_URL"]
    try:
        with Connection(url, connect_timeout=timeout_s) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the same refusal
        raise SystemExit(
            f"the Celery broker at {_broker_url_for_humans(url)} does not answer: {type(exc).__name__}: {exc}"
        ) from None


def celery_ping(env: dict[str, str], timeout_s: float = 2) -> set[str]:
    """The Celery workers that answer a ping over the broker, by their node names
    (``celery@celery-worker-1.<host>``)."""
    from celery import Celery

    app = Celery(broker=env["AIRFLOW__CELERY__BROKER_URL"])
    try:
        return {name for reply in app.control.ping(timeout=timeout_s) or [] for name in reply}
    except Exception:  # noqa: BLE001 - no broker, no answer
        return set()
    finally:
        app.close()


def celery_hostname(worker: str) -> str:
    """A worker component's ``--celery-hostname``: ``celery-worker-1.<this host>`` (Airflow refuses to start a
    second worker of the same name on the broker)."""
    import socket

    return f"{worker}.{socket.gethostname()}"


def node_name(worker: str) -> str:
    """The Celery node name the worker answers a ping under (Celery prefixes ``celery@``)."""
    return f"celery@{celery_hostname(worker)}"


def prepare(env: dict[str, str]) -> None:
    """Migrate the metadata database, create the pools the DAGs need and, for the service component, the
    embedded model registry when there is none yet; with the CeleryExecutor, first make sure the broker answers."""
    if executor(env) == CELERY:
        check_broker(env)
    log = _run_dir(env) / "db-migrate.log"
    with open(log, "ab") as out:
        for cmd in (
            ["db", "migrate"],
            [
                "pools",
                "set",
                "horovod",
                env.get("MLOPS_HOROVOD_POOL_SLOTS", "1"),
                "Concurrent Horovod training jobs (each uses several processes)",
            ],
            [
                "pools",
                "set",
                "tuning",
                env.get("MLOPS_TUNING_POOL_SLOTS", "2"),
                "Concurrent tuning trials (one process each)",
            ],
        ):
            rc = subprocess.run(
                [_airflow(env), *cmd], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900
            ).returncode
            if rc:
                raise SystemExit(f"airflow {' '.join(cmd)} failed (exit {rc}); see {log}")
        if serves(env) and not env.get("MLFLOW_TRACKING_URI"):
            # the service refuses a missing embedded registry (a wrong MLOPS_HOME); this deployment owns its
            # MLOPS_HOME, so the store is made here, as the first training run would make it
            rc = subprocess.run(
                [sys.executable, "-c", "from include.mlops.core import registry; registry.versions()"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                cwd=str(ROOT),
            ).returncode
            if rc:
                raise SystemExit(f"creating the model registry under MLOPS_HOME failed (exit {rc}); see {log}")


def _command(env: dict[str, str], name: str) -> list[str]:
    if name == SERVE:  # this interpreter; MLOPS_HOME, MLOPS_SERVE_HOST/PORT and the token from env
        return [sys.executable, "-m", "include.mlops.serve.app"]
    workers = worker_names(env)
    if name in workers:
        # the first worker serves the task logs of this host (AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT); the
        # others write into the same log folder, so a second log server (on the same port) is not needed
        extra = ["--skip-serve-logs"] if name != workers[0] else []
        return [_airflow(env), "celery", "worker", "--celery-hostname", celery_hostname(name), *extra]
    return [_airflow(env), name]


def start(env: dict[str, str]) -> dict[str, int]:
    run = _run_dir(env)
    pids = {}
    for name in components(env):
        out = open(run / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        p = subprocess.Popen(
            _command(env, name),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=str(ROOT),
        )
        out.close()
        pids[name] = p.pid
    (run / "pids.json").write_text(json.dumps(pids))
    return pids


def health(env: dict[str, str]) -> dict | None:
    try:
        with urllib.request.urlopen(env["AIRFLOW__API__BASE_URL"] + "/api/v2/monitor/health", timeout=5) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def serve_health(env: dict[str, str]) -> dict | None:
    """The service component's /health (its status is "no_model" until a first champion: it answers, so it is
    up); None when it does not answer."""
    try:
        with urllib.request.urlopen(serve_url(env) + "/health", timeout=5) as r:
            return json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def healthy(h: dict | None) -> bool:
    if not h:
        return False
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((h.get(p) or {}).get("status") == "healthy" for p in parts)


def wait_healthy(env: dict[str, str], pids: dict[str, int], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    h, waiting = None, set()
    while time.monotonic() < deadline:
        for name, pid in pids.items():
            if not _alive(pid):
                raise SystemExit(f"{name} exited during start-up; see {_run_dir(env) / (name + '.log')}")
        h = health(env)
        workers = {node_name(n) for n in pids if n in worker_names(env)}
        waiting = workers - celery_ping(env) if workers else set()
        if healthy(h) and not waiting and (SERVE not in pids or serve_health(env) is not None):
            return h
        time.sleep(2)
    if healthy(h) and waiting:
        h = f"the Celery worker(s) {sorted(waiting)} do not answer a ping over the broker"
    elif healthy(h):
        h = f"the prediction service does not answer at {serve_url(env)}/health"
    raise SystemExit(f"not healthy after {timeout_s:.0f} s: {h}; logs in {_run_dir(env)}")


def _alive(pid: int) -> bool:
    try:
        import psutil

        p = psutil.Process(pid)
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - gone
        return False


def stop(env: dict[str, str], timeout_s: float = 60) -> list[int]:
    """SIGTERM each component with everything it started (task processes run in their own process groups),
    wait, then SIGKILL what is left. Returns the pids that had to be killed."""
    import psutil

    pid_file = _run_dir(env) / "pids.json"
    if not pid_file.exists():
        return []
    pids = json.loads(pid_file.read_text())
    procs: dict[int, psutil.Process] = {}
    # the scheduler first: it starts no new task once it is told to stop; then the rest as they were started
    for name in [*(n for n in COMPONENTS if n in pids), *(n for n in pids if n not in COMPONENTS)]:
        pid = pids[name]
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in family:
            procs[p.pid] = p
        try:
            os.killpg(pid, signal.SIGTERM)  # the component's own session
        except (ProcessLookupError, PermissionError):
            pass
        for p in family[1:]:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=timeout_s)
    killed = []
    for p in alive:
        try:
            p.kill()
            killed.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGKILL)  # anything left in the components' groups
        except (ProcessLookupError, PermissionError):
            pass
    pid_file.unlink(missing_ok=True)
    return killed
