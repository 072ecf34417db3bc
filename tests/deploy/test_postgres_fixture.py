"""The deployment tests' PostgreSQL on a machine without a server: nothing answers at the address asked for (here
an unused port, so the machine's own server, if any, is left alone), so the tests start a throw-away server of
their own from the binaries of the ``pgserver`` package, serve databases from it, and remove it: no process,
no data folder left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg2
import pytest
from pg_server import ThrowawayPostgres, postgres_for_tests, reachable, server_binaries

ROOT = Path(__file__).resolve().parents[2]
NOBODY_THERE = "postgresql://postgres@127.0.0.1:1"  # port 1: nothing listens there


def test_unreachable_server_is_replaced_by_a_throw_away_one():
    assert reachable(NOBODY_THERE) is not None
    with postgres_for_tests(NOBODY_THERE) as (url, server):
        assert server is not None and url == server.url and url != NOBODY_THERE
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        proc = psutil.Process(server.pid)
        assert proc.name() == "postgres" and proc.is_running()
        if os.geteuid() == 0:  # PostgreSQL refuses root: it runs as an unprivileged user
            assert proc.username() == server.run_as != "root"
        assert (server.data_dir / "PG_VERSION").is_file()
        folder = server.base
        # it serves a throw-away database the way the deployment uses it
        conn = psycopg2.connect(f"{url}/postgres", connect_timeout=10)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('CREATE DATABASE "mlops_fixture_check"')
        conn.close()
        with psycopg2.connect(f"{url}/mlops_fixture_check", connect_timeout=10) as db, db.cursor() as cur:
            cur.execute("CREATE TABLE t (x int)")
            cur.execute("INSERT INTO t VALUES (1), (2)")
            cur.execute("SELECT sum(x) FROM t")
            assert cur.fetchone() == (3,)
        db.close()
        pid = server.pid
    # left the block: the server is stopped and its folder removed
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not folder.exists()
    assert reachable(url) is not None
    record = server.stop()
    assert record["process_alive"] is False and record["folder_exists"] is False


def test_a_reachable_server_is_used_as_it_is():
    with ThrowawayPostgres(server_binaries()).start() as first:
        with postgres_for_tests(first.url) as (url, server):
            assert server is None and url == first.url
    assert first.stop()["folder_exists"] is False


def test_no_binaries_and_no_server_says_what_to_install(tmp_path):
    code = (
        "import pg_server, sys\n"
        "pg_server.server_binaries = lambda: None\n"
        "try:\n"
        "    with pg_server.postgres_for_tests(sys.argv[1]):\n"
        "        pass\n"
        "except pg_server.PostgresUnavailable as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, NOBODY_THERE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent,
    )
    assert f"PostgreSQL is not reachable at {NOBODY_THERE}" in out.stdout, out.stdout + out.stderr
    assert "pgserver" in out.stdout and "apt-get install postgresql" in out.stdout and "MLOPS_TEST_PG" in out.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs the copy of unreachable binaries")
def test_binaries_the_server_user_cannot_reach_are_copied(tmp_path, monkeypatch):
    import shutil

    src = server_binaries().parent  # .../site-packages/pgserver/pginstall
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    (hidden / "site" / "pgserver").mkdir(parents=True)
    shutil.copytree(src, hidden / "site" / "pgserver" / "pginstall", symlinks=True)
    libs = src.parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, hidden / "site" / "pgserver.libs", symlinks=True)
    hidden.chmod(0o700)
    server = ThrowawayPostgres(hidden / "site" / "pgserver" / "pginstall" / "bin").start()
    try:
        assert server.base in server.bindir.parents  # the copy in its own folder
        psycopg2.connect(f"{server.url}/postgres", connect_timeout=10).close()
    finally:
        record = server.stop()
    assert not record["process_alive"] and not record["folder_exists"]
