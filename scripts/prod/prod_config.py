"""The production-shaped deployment's configuration: the components' environment (the caller's, with defaults for
a small host where it sets nothing), the checks that refuse a configuration unfit for production, the users'
passwords (never defaults, never printed), the prediction service's token and the metadata database."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from include.mlops.core.config import (  # noqa: E402 - the one reader of MLOPS_SERVE_TOKEN(_FILE), the one rule
    MIN_SERVE_TOKEN,
    serve_token,
    serve_token_problem,
)

COMPONENTS = ("scheduler", "dag-processor", "triggerer", "api-server")  # Airflow's, each `airflow <name>`
SERVE = "serve"  # the prediction service: python -m include.mlops.serve.app
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
    "MLOPS_INGEST_DEADLINE_S": "28800",  # a day not ingested within 8 hours of its run being queued: Slack
    "MLOPS_SERVE_COMPONENT": "true",  # false: the prediction service runs elsewhere (MLOPS_SERVE_URL names it)
    "MLOPS_SERVE_HOST": "127.0.0.1",
    "MLOPS_SERVE_PORT": "8000",
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
    env.setdefault("MLOPS_HOME", str(ROOT / ".mlops"))  # the registry and lake of Airflow and the service alike
    env.setdefault(
        "AIRFLOW__API__BASE_URL", f"http://{_client_host(env['AIRFLOW__API__HOST'])}:{env['AIRFLOW__API__PORT']}"
    )
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(home / "secrets" / "passwords.json"))
    if serves(env):  # the DAGs' traffic (simulate_upstream) goes to this deployment's own service
        env.setdefault("MLOPS_SERVE_URL", serve_url(env))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _client_host(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind


def serves(env: dict[str, str]) -> bool:
    """Whether the prediction service is one of this deployment's components (``MLOPS_SERVE_COMPONENT``)."""
    return _truthy(env.get("MLOPS_SERVE_COMPONENT", "true"))


def components(env: dict[str, str]) -> tuple[str, ...]:
    return (*COMPONENTS, SERVE) if serves(env) else COMPONENTS


def serve_url(env: dict[str, str]) -> str:
    """The service component's own address (what its health check asks), from where it binds."""
    return f"http://{_client_host(env['MLOPS_SERVE_HOST'])}:{env['MLOPS_SERVE_PORT']}"


def users(env: dict[str, str]) -> list[str]:
    return [u.split(":")[0].strip() for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",") if u.strip()]


def check(env: dict[str, str]) -> list[str]:
    """Everything that makes this configuration unfit for production, in words; empty when it is fit."""
    problems = []
    db = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if not db:
        problems.append(
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is not set: give the PostgreSQL metadata database "
            "(postgresql+psycopg2://user:password@host:5432/airflow)"
        )
    elif not db.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        problems.append(
            f"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN must name a PostgreSQL database (got a {db.split(':', 1)[0]!r} URL)"
        )
    jwt = env.get("AIRFLOW__API_AUTH__JWT_SECRET", "")
    if not jwt:
        problems.append(
            "AIRFLOW__API_AUTH__JWT_SECRET is not set: give a random secret of at least "
            f"{MIN_JWT_SECRET} characters (python -c 'import secrets; print(secrets.token_urlsafe(64))')"
        )
    elif len(jwt) < MIN_JWT_SECRET:
        problems.append(
            f"AIRFLOW__API_AUTH__JWT_SECRET is too short ({len(jwt)} characters, need at least {MIN_JWT_SECRET})"
        )
    fernet = env.get("AIRFLOW__CORE__FERNET_KEY", "")
    if not fernet:
        problems.append(
            "AIRFLOW__CORE__FERNET_KEY is not set: connections and variables would be stored "
            "unencrypted (python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        )
    else:
        try:
            from cryptography.fernet import Fernet

            for key in fernet.split(","):
                Fernet(key.strip().encode())
        except Exception:  # noqa: BLE001 - any failure means the key is unusable
            problems.append("AIRFLOW__CORE__FERNET_KEY is not a valid Fernet key (32 url-safe base64 bytes)")
    if serves(env) or env.get("MLOPS_SERVE_URL"):  # the service's /predict, and its callers, need the token
        problems += _serve_token_problems(env)
    if env["AIRFLOW__CORE__EXECUTOR"] != "LocalExecutor":
        problems.append(
            f"this launcher runs the LocalExecutor only (AIRFLOW__CORE__EXECUTOR="
            f"{env['AIRFLOW__CORE__EXECUTOR']}); run Celery or Kubernetes workers with the Helm chart"
        )
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


def _serve_token_problems(env: dict[str, str]) -> list[str]:
    try:
        token = serve_token(env)
    except (OSError, ValueError) as exc:
        return [f"MLOPS_SERVE_TOKEN_FILE cannot be read: {exc}"]
    if token is None:
        return [
            "MLOPS_SERVE_TOKEN (or MLOPS_SERVE_TOKEN_FILE) is not set: the prediction service's /predict would be "
            f"open to anyone who reaches its port; give a random token of at least {MIN_SERVE_TOKEN} characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))' > a file only the deployment reads)"
        ]
    where = "MLOPS_SERVE_TOKEN" if (env.get("MLOPS_SERVE_TOKEN") or "").strip() else "MLOPS_SERVE_TOKEN_FILE"
    problem = serve_token_problem(token, where)
    return [problem] if problem else []


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


def create_database(env: dict[str, str]) -> None:
    """Create the database named in the URL if it does not exist (local convenience: ``--create-db``)."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    url = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    conn = psycopg2.connect(
        host=url.host or "127.0.0.1", port=url.port or 5432, user=url.username, password=url.password, dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(url.database)))
            print(f"created database {url.database}")
    conn.close()
