"""Helpers of the deployment tests: the deployment's handle (REST, lake, registry, logs), its environment, a
Slack webhook stand-in. ``conftest.py`` starts and stops the deployment."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from slack_endpoint import SlackEndpoint

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "scripts" / "prod" / "airflow_prod.py"
OUTPUT = ROOT / "test-output"
PG = os.environ.get("MLOPS_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
TERMINAL = {"success", "failed"}


def launcher(env: dict[str, str], *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess:
    """``scripts/prod/airflow_prod.py *args`` in the deployment's environment, its output captured: ``UP`` starts
    the deployment and returns once it answers, ``STOP`` stops it."""
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *args], env=env, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT
    )


UP = ("up", "--detach", "--timeout", "400")
STOP = ("stop", "--grace", "20")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deployment:
    """The running deployment: its URL, environment, secrets, REST client, lake and registry."""

    def __init__(self, home: Path, env: dict[str, str], slack: SlackEndpoint, aws_secret: str):
        self.home = home
        self.env = env
        self.url = env["AIRFLOW__API__BASE_URL"]
        self.slack = slack
        self.aws_secret = aws_secret
        self.airflow_home = Path(env["AIRFLOW_HOME"])
        self.serve_url = f"http://127.0.0.1:{env['MLOPS_SERVE_PORT']}"  # the prediction service component
        self._token: str | None = None

    @property
    def serve_token(self) -> str:
        return Path(self.env["MLOPS_SERVE_TOKEN_FILE"]).read_text().strip()

    # auth and REST --------------------------------------------------------------------------------------------
    @property
    def password(self) -> str:
        return json.loads(Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())["admin"]

    def token(self) -> str:
        if self._token is None:
            import httpx

            r = httpx.post(self.url + "/auth/token", json={"username": "admin", "password": self.password}, timeout=30)
            assert r.status_code in (200, 201), r.text
            self._token = r.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs):
        import httpx

        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        r = httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)
        return r

    def get(self, path: str, **kwargs) -> dict:
        r = self.api("GET", path, **kwargs)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:500]}"
        return r.json()

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "run_after"})["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        tis = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances", params={"limit": 100})[
            "task_instances"
        ]
        return {ti["task_id"]: ti for ti in tis}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """A task's log as the UI gets it (``/logs/<try>``), one line per record: the message, then the fields
        the record carries."""
        r = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
        )
        assert r.status_code == 200, f"log of {dag_id}.{task_id}: {r.status_code} {r.text[:300]}"
        lines = []
        for rec in r.json()["content"]:
            if isinstance(rec, dict):
                extra = {k: v for k, v in rec.items() if k not in ("event", "timestamp")}
                lines.append(f"{rec.get('event', '')} {json.dumps(extra, default=str) if extra else ''}".rstrip())
            else:
                lines.append(str(rec))
        return "\n".join(lines)

    def trigger(self, dag_id: str, logical_date: str | None = None, conf: dict | None = None) -> dict:
        r = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": logical_date, "conf": conf or {}})
        assert r.status_code == 200, f"trigger {dag_id}: {r.status_code} {r.text[:500]}"
        return r.json()

    def wait_for(self, what: str, predicate, timeout_s: float, every_s: float = 3.0):
        """Poll ``predicate()`` until it returns something truthy; fail with the last value and the logs' tails."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(every_s)
        pytest.fail(
            f"timed out after {timeout_s:.0f} s waiting for {what}; last value: {value!r}\n"
            + self.component_log_tails()
        )

    def component_log_tails(self, lines: int = 15) -> str:
        out = []
        for f in sorted((self.airflow_home / "prod").glob("*.log")):
            tail = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(tail))
        return "\n".join(out)

    # the project's side ---------------------------------------------------------------------------------------
    @property
    def lake(self):
        from include.mlops.core.lake import Lake

        return Lake(self.env["MLOPS_LAKE_URL"])

    def python(self, code: str) -> object:
        """Run Python in the deployment's environment (its registry, its lake); returns the JSON it prints."""
        out = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=180, cwd=ROOT
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def registry(self) -> dict:
        return self.python(
            "import json\nfrom include.mlops.core import registry\n"
            "print(json.dumps({'versions': registry.versions(), 'champion': registry.alias_version('champion'),"
            " 'challenger': registry.alias_version('challenger')}))"
        )

    def all_logs(self) -> dict[Path, str]:
        """Every log the deployment wrote: components, migrations, task logs."""
        files = [
            p
            for p in self.airflow_home.rglob("*")
            if p.is_file() and (p.suffix in (".log", ".json") or "logs" in p.parts)
        ]
        return {p: p.read_text(errors="replace") for p in files if "secrets" not in p.parts}


def deployment_env(home: Path, db_url: str, slack: SlackEndpoint, aws_secret: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "MLOPS_", "MLFLOW_"))}
    port = free_port()
    # the prediction service's bearer token, generated for this deployment, readable by its owner only
    serve_token = home / "secrets" / "serve_token"
    serve_token.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(serve_token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    env.update(
        {
            "MLOPS_HOME": str(home),
            "AIRFLOW_HOME": str(home / "airflow"),
            "MLOPS_LAKE_URL": (home / "lake").as_uri(),
            "PYTHONPATH": str(ROOT),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "airflow" / "secrets" / "passwords.json"),
            # a team: who may change what is served (plugins/mlops_airflow/auth.py); passwords made by the launcher
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,ana:user,vic:viewer,otto:op",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # the fifth component: the prediction service on this MLOPS_HOME, its token on
            "MLOPS_SERVE_PORT": str(free_port()),
            "MLOPS_SERVE_TOKEN_FILE": str(serve_token),
            "MLOPS_SERVE_REFRESH_S": "2",
            "AIRFLOW__CORE__PARALLELISM": "3",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "900",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            # the lifecycle on a small scale: quick pokes and retries, a first model once 4 days are curated
            "MLOPS_TRAIN_MIN_DAYS": "4",
            "MLOPS_SENSOR_POKE_S": "1",
            "MLOPS_SENSOR_TIMEOUT_S": "120",
            "MLOPS_RETRY_DELAY_S": "1",
            "MLOPS_DEPLOY_POKE_S": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "MLOPS_START_DATE": "2013-01-01",
            # secrets that must never reach a log
            "AIRFLOW_CONN_SLACK_DEFAULT": json.dumps({"conn_type": "slackwebhook", "password": slack.url}),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                {
                    "conn_type": "aws",
                    "login": "AKIADEPLOYTEST0000000",
                    "password": aws_secret,
                    "extra": {"region_name": "us-east-1"},
                }
            ),
        }
    )
    return env


def _family(pids) -> list[int]:
    import psutil

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out += [p.pid] + [c.pid for c in p.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return out


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextmanager
def bench_deployment(pg: str, prefix: str, settings: dict[str, str]):
    """A deployment for a benchmark, not started: a database of its own on the server ``pg``, a throw-away
    ``MLOPS_HOME`` (``prefix``), a Slack stand-in, ``settings`` over ``deployment_env``'s. At the end the deployment
    is stopped (``STOP``, when the caller started it with ``UP``) and its database dropped."""
    import psycopg2

    name = f"mlops_bench_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(f"{pg}/postgres", connect_timeout=10)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    home = Path(tempfile.mkdtemp(prefix=prefix))
    slack = SlackEndpoint()
    url = f"{pg.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{name}"
    env = deployment_env(home, url, slack, secrets.token_hex(16)) | settings
    try:
        yield Deployment(home, env, slack, "x")
    finally:
        launcher(env, *STOP, timeout_s=180)
        slack.close()
        conn.cursor().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()
