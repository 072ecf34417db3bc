#!/usr/bin/env python3
"""A production-shaped Airflow on one host: scheduler, dag-processor, triggerer and api-server as separate
processes, LocalExecutor, PostgreSQL metadata database, every setting from the environment.

    python scripts/prod/airflow_prod.py check            # validate the configuration, start nothing
    python scripts/prod/airflow_prod.py up [--detach]    # migrate, then start the four components
    python scripts/prod/airflow_prod.py status
    python scripts/prod/airflow_prod.py stop             # SIGTERM every component and its children, then wait

It refuses to start (exit 2, naming each problem) when the configuration is not fit for production:

- ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` missing or not PostgreSQL;
- ``AIRFLOW__API_AUTH__JWT_SECRET`` missing or shorter than 32 characters;
- ``AIRFLOW__CORE__FERNET_KEY`` missing or not a Fernet key (connections and variables would sit unencrypted
  in the database);
- an executor other than the LocalExecutor (this launcher runs no Celery / Kubernetes workers);
- the simple auth manager with ``simple_auth_manager_all_admins`` (no login at all), or a user whose password
  is a default or shorter than 16 characters.

Passwords of the simple auth manager's users (``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS``, default
``admin:admin``, i.e. user ``admin`` with role ``admin``) come from ``MLOPS_PASSWORD_<USER>`` (e.g.
``MLOPS_PASSWORD_ADMIN``) or are generated once, randomly, into the passwords file (mode 0600,
``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE``, default ``$AIRFLOW_HOME/secrets/passwords.json``). No
password is ever printed, only the file that holds it.

Component logs: ``$AIRFLOW_HOME/prod/<component>.log``; process ids: ``$AIRFLOW_HOME/prod/pids.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")
MIN_JWT_SECRET = 32
MIN_PASSWORD = 16
WEAK_PASSWORDS = {"admin", "airflow", "password", "changeme", "secret", "test", "123456", "letmein"}

# Defaults for a small host; each is used only when the environment does not set it.
DEFAULTS = {
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__API__HOST": "127.0.0.1",
    "AIRFLOW__API__PORT": "8080",
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__API__EXPOSE_CONFIG": "False",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__CORE__HIDE_SENSITIVE_VAR_CONN_FIELDS": "True",
    "GX_ANALYTICS_ENABLED": "false",
}


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The components' environment: the caller's, with the defaults above where it sets nothing."""
    env = dict(os.environ if env is None else env)
    for k, v in DEFAULTS.items():
        env.setdefault(k, v)
    home = Path(env.get("AIRFLOW_HOME") or Path(env.get("MLOPS_HOME") or ROOT / ".mlops") / "airflow-prod")
    env["AIRFLOW_HOME"] = str(home)
    env.setdefault("AIRFLOW__API__BASE_URL", f"http://{_client_host(env['AIRFLOW__API__HOST'])}:"
                                             f"{env['AIRFLOW__API__PORT']}")
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(home / "secrets" / "passwords.json"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _client_host(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind


def users(env: dict[str, str]) -> list[str]:
    return [u.split(":")[0].strip() for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",") if u.strip()]


def check(env: dict[str, str]) -> list[str]:
    """Everything that makes this configuration unfit for production, in words; empty when it is fit."""
    problems = []
    db = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if not db:
        problems.append("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not set: give the PostgreSQL metadata database "
                        "(postgresql+psycopg2://user:password@host:5432/airflow)")
    elif not db.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        problems.append("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN must name a PostgreSQL database "
                        f"(got a {db.split(':', 1)[0]!r} URL)")
    jwt = env.get("AIRFLOW__API_AUTH__JWT_SECRET", "")
    if not jwt:
        problems.append("AIRFLOW__API_AUTH__JWT_SECRET is not set: give a random secret of at least "
                        f"{MIN_JWT_SECRET} characters (python -c 'import secrets; print(secrets.token_urlsafe(64))')")
    elif len(jwt) < MIN_JWT_SECRET:
        problems.append(f"AIRFLOW__API_AUTH__JWT_SECRET is too short ({len(jwt)} characters, need at least "
                        f"{MIN_JWT_SECRET})")
    fernet = env.get("AIRFLOW__CORE__FERNET_KEY", "")
    if not fernet:
        problems.append("AIRFLOW__CORE__FERNET_KEY is not set: connections and variables would be stored "
                        "unencrypted (python -c 'from cryptography.fernet import Fernet; "
                        "print(Fernet.generate_key().decode())')")
    else:
        try:
            from cryptography.fernet import Fernet

            for key in fernet.split(","):
                Fernet(key.strip().encode())
        except Exception:  # noqa: BLE001 - any failure means the key is unusable
            problems.append("AIRFLOW__CORE__FERNET_KEY is not a valid Fernet key (32 url-safe base64 bytes)")
    if env["AIRFLOW__CORE__EXECUTOR"] != "LocalExecutor":
        problems.append(f"this launcher runs the LocalExecutor only (AIRFLOW__CORE__EXECUTOR="
                        f"{env['AIRFLOW__CORE__EXECUTOR']}); run Celery or Kubernetes workers with the Helm chart")
    if "SimpleAuthManager" in env["AIRFLOW__CORE__AUTH_MANAGER"]:
        if _truthy(env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS")):
            problems.append("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS disables login: not in production")
        if not users(env):
            problems.append("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS names no user")
        for user in users(env):
            pw = env.get(_password_var(user))
            if pw is not None:
                problems += _weak(user, pw, _password_var(user))
        pw_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        if pw_file.exists():
            try:
                stored = json.loads(pw_file.read_text() or "{}")
            except json.JSONDecodeError:
                stored = {}
                problems.append(f"{pw_file} is not JSON")
            for user, pw in stored.items():
                if env.get(_password_var(user)) is None:
                    problems += _weak(user, pw, str(pw_file))
    return problems


def _password_var(user: str) -> str:
    return "MLOPS_PASSWORD_" + "".join(c if c.isalnum() else "_" for c in user).upper()


def _weak(user: str, pw: str, where: str) -> list[str]:
    if pw.lower() in WEAK_PASSWORDS or pw.lower() == user.lower():
        return [f"user {user!r} has a default password ({where})"]
    if len(pw) < MIN_PASSWORD:
        return [f"user {user!r} has a password shorter than {MIN_PASSWORD} characters ({where})"]
    return []


def write_passwords(env: dict[str, str]) -> Path:
    """The simple auth manager's passwords file: env-given passwords, else kept or generated ones (0600)."""
    pw_file = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    pw_file.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(pw_file.parent, 0o700)
    stored = json.loads(pw_file.read_text() or "{}") if pw_file.exists() else {}
    wanted = {}
    for user in users(env):
        wanted[user] = env.get(_password_var(user)) or stored.get(user) or secrets.token_urlsafe(18)
    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(wanted, f)
    os.chmod(pw_file, 0o600)
    return pw_file


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


def prepare(env: dict[str, str]) -> None:
    """Migrate the metadata database and create the pools the DAGs need."""
    log = _run_dir(env) / "db-migrate.log"
    with open(log, "ab") as out:
        for cmd in (["db", "migrate"],
                    ["pools", "set", "horovod", env.get("MLOPS_HOROVOD_POOL_SLOTS", "1"),
                     "Concurrent Horovod training jobs (each uses several processes)"]):
            rc = subprocess.run([_airflow(env), *cmd], env=env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=900).returncode
            if rc:
                raise SystemExit(f"airflow {' '.join(cmd)} failed (exit {rc}); see {log}")


def start(env: dict[str, str]) -> dict[str, int]:
    run = _run_dir(env)
    pids = {}
    for name in COMPONENTS:
        out = open(run / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        p = subprocess.Popen([_airflow(env), name], env=env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(ROOT))
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


def healthy(h: dict | None) -> bool:
    if not h:
        return False
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all((h.get(p) or {}).get("status") == "healthy" for p in parts)


def wait_healthy(env: dict[str, str], pids: dict[str, int], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    h = None
    while time.monotonic() < deadline:
        for name, pid in pids.items():
            if not _alive(pid):
                raise SystemExit(f"{name} exited during start-up; see {_run_dir(env) / (name + '.log')}")
        h = health(env)
        if healthy(h):
            return h
        time.sleep(2)
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
    for name in COMPONENTS:  # the scheduler first: it starts no new task once it is told to stop
        pid = pids.get(name)
        if pid is None:
            continue
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


def create_database(env: dict[str, str]) -> None:
    """Create the database named in the URL if it does not exist (local convenience: ``--create-db``)."""
    from sqlalchemy.engine import make_url

    import psycopg2
    from psycopg2 import sql

    url = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    conn = psycopg2.connect(host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username,
                            password=url.password, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
            print(f"created database {url.database}")
    conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("check", "up", "status", "stop"))
    ap.add_argument("--detach", action="store_true", help="return once healthy, leaving the components running")
    ap.add_argument("--create-db", action="store_true", help="create the PostgreSQL database if it is missing")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for a healthy deployment")
    ap.add_argument("--grace", type=float, default=60,
                    help="stop: seconds to wait after SIGTERM before killing what is still running")
    args = ap.parse_args(argv)
    env = environment()

    if args.command == "stop":
        killed = stop(env, timeout_s=args.grace)
        print("stopped" + (f" (killed {len(killed)} process(es) that ignored SIGTERM)" if killed else ""))
        return 0
    if args.command == "status":
        h = health(env)
        print(json.dumps(h, indent=2) if h else f"no api-server at {env['AIRFLOW__API__BASE_URL']}")
        return 0 if healthy(h) else 1

    problems = check(env)
    if problems:
        print("refusing to start: the configuration is not fit for production:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    if args.command == "check":
        print("configuration fit for production")
        return 0

    if (_run_dir(env) / "pids.json").exists() and health(env):
        print(f"already running at {env['AIRFLOW__API__BASE_URL']} (stop it first)", file=sys.stderr)
        return 1
    if args.create_db:
        create_database(env)
    pw_file = write_passwords(env)
    prepare(env)
    pids = start(env)
    try:
        wait_healthy(env, pids, args.timeout)
    except SystemExit:
        stop(env)
        raise
    print(f"Airflow at {env['AIRFLOW__API__BASE_URL']}  (users: {', '.join(users(env))}; passwords in {pw_file})")
    print(f"components: {json.dumps(pids)}; logs in {_run_dir(env)}")
    if args.detach:
        return 0

    print("Ctrl-C stops every component")
    stopping = []

    def _stop(signum, frame):  # noqa: ARG001
        stopping.append(signum)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping:
        dead = [n for n, pid in pids.items() if not _alive(pid)]
        if dead:
            print(f"{', '.join(dead)} exited; stopping the rest (logs in {_run_dir(env)})", file=sys.stderr)
            stop(env)
            return 1
        time.sleep(2)
    stop(env)
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
