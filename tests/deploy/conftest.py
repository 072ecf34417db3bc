"""A production-shaped deployment for the tests in this folder, started once per test module.

``scripts/prod/airflow_prod.py up`` starts the scheduler (LocalExecutor), dag-processor, triggerer and
api-server as separate processes on a throw-away PostgreSQL database (created with a unique name, dropped at the
end) on the server at ``MLOPS_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432``) or, when nothing
answers there, on a throw-away server the tests start themselves and remove at the end (``pg_server.py``), with
a fresh MLOPS_HOME / AIRFLOW_HOME, a generated JWT secret and Fernet key, a real HTTP endpoint as the
Slack webhook and an ``aws_default`` connection carrying a fake secret key. Module-scoped: everything it
started is stopped when the module's tests are done (not at the end of ``make test``), and the test fails if
a process survives.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from deploy_support import (
    OUTPUT,
    PG,
    STOP,
    UP,
    Deployment,
    SlackEndpoint,
    _alive,
    _family,
    deployment_env,
    launcher,
)
from pg_server import PostgresUnavailable, postgres_for_tests

CHROMIUM = os.environ.get("MLOPS_CHROMIUM", "/usr/bin/chromium")
SERVED: list[str] = []  # the databases pg_database created, for the record of a throw-away server


@pytest.fixture(scope="session")
def pg_server():
    """The PostgreSQL server's URL (``postgresql://user@host:port``): ``MLOPS_TEST_PG``'s when it answers, else
    a throw-away server's, started here and gone (process and data folder) at the end of the session."""
    try:
        with postgres_for_tests(PG) as (url, server):
            if server is not None:
                print(
                    f"\nno PostgreSQL at {PG}: started a throw-away server at {url} (pid {server.pid}, "
                    f"{server.data_dir}, {server.start_s:.1f} s)"
                )
            yield url
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    if server is not None:
        record = server.stop()  # stopped on leaving the block: this reads what is left
        (OUTPUT / "postgres_fallback.json").write_text(
            json.dumps({"requested": PG, "url": url, "databases_served": SERVED, **record}, indent=2)
        )
        assert not record["process_alive"] and not record["folder_exists"], record


def _pg(base: str, dbname: str = "postgres"):
    import psycopg2

    conn = psycopg2.connect(f"{base}/{dbname}", connect_timeout=10)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def pg_database(pg_server):
    """A throw-away PostgreSQL database with a unique name, dropped at the end of the module."""
    name = f"mlops_deploy_{uuid.uuid4().hex[:12]}"
    conn = _pg(pg_server)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = f"{pg_server.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{name}"
    SERVED.append(url)
    try:
        yield url
    finally:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            assert cur.fetchone() is None
        conn.close()


@pytest.fixture(scope="module")
def deployment(pg_database, request):
    """The deployment; a test module may add settings with ``deployment_settings(home) -> dict`` (the replay's)."""
    home = Path(tempfile.mkdtemp(prefix="mlops-deploy-"))
    slack = SlackEndpoint()
    aws_secret = "wJalrDeployTest" + secrets.token_hex(16)
    env = deployment_env(home, pg_database, slack, aws_secret)
    settings = getattr(request.module, "deployment_settings", None)
    if settings is not None:
        env.update(settings(home))
    t0 = time.monotonic()
    up = launcher(env, *UP)
    dep = Deployment(home, env, slack, aws_secret)
    dep.start_output = up.stdout + up.stderr
    dep.start_s = time.monotonic() - t0
    try:
        assert up.returncode == 0, (
            f"launcher failed ({up.returncode}):\n{dep.start_output[-3000:]}\n" + dep.component_log_tails(40)
        )
        yield dep
    finally:
        pids = (
            json.loads((home / "airflow" / "prod" / "pids.json").read_text())
            if (home / "airflow" / "prod" / "pids.json").exists()
            else {}
        )
        family = _family(pids.values())
        t1 = time.monotonic()
        down = launcher(env, *STOP, timeout_s=180)
        record = {
            "start_s": round(dep.start_s, 1),
            "stop_s": round(time.monotonic() - t1, 1),
            "stop_output": (down.stdout + down.stderr)[-500:],
        }
        (OUTPUT / "deploy_lifecycle.json").write_text(
            json.dumps(
                {
                    **(
                        json.loads((OUTPUT / "deploy_lifecycle.json").read_text())
                        if (OUTPUT / "deploy_lifecycle.json").exists()
                        else {}
                    ),
                    **record,
                },
                indent=2,
            )
        )
        slack.close()
        survivors = [p for p in family if _alive(p)]
        for p in survivors:  # never leave anything behind, even when the stop failed
            try:
                os.kill(p, 9)
            except OSError:
                pass
        assert down.returncode == 0, down.stdout + down.stderr
        assert not survivors, f"processes left running after stop: {survivors}"


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium") or CHROMIUM
    if not Path(path).exists():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.fail(
                "the browser test needs Debian's Chromium: `apt-get install -y chromium` "
                "(or set MLOPS_CHROMIUM to a Chromium binary)"
            )
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
        out = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        path = shutil.which("chromium") or CHROMIUM
    return path


@pytest.fixture
def page(chromium, deployment):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        try:
            yield pg
        finally:
            browser.close()
