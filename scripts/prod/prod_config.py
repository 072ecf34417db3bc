"""The production-shaped deployment's configuration: the components' environment (the caller's, with defaults for
a small host where it sets nothing), the checks that refuse a configuration unfit for production, the users'
passwords (never defaults, never printed), the prediction service's token and the metadata database.

Executors (``AIRFLOW__CORE__EXECUTOR``):

- ``LocalExecutor`` (the default): the scheduler runs the tasks as its own child processes, on this host.
- ``CeleryExecutor`` (``apache-airflow-providers-celery``): the scheduler queues the tasks on a broker and Celery
  workers run them. It needs

  - a broker, ``AIRFLOW__CELERY__BROKER_URL``: Redis (``redis://host:6379/0``, ``rediss://``) or RabbitMQ
    (``amqp://user:password@host:5672//``, ``amqps://``);
  - a result backend that is a database, ``AIRFLOW__CELERY__RESULT_BACKEND`` (``db+postgresql://...``): the
    executor reads its tasks' states from it in bulk. Unset, it is the metadata database (``db+`` and
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``);
  - with Redis, the broker's ``visibility_timeout``
    (``AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT``, seconds). Airflow acknowledges a task
    only once it has finished (``task_acks_late``), so Redis hands a task to another worker when it has not
    been acknowledged within this time: a task whose worker died waits that long before it runs again, and a
    task still running after it runs a second time. Celery's provider uses 24 hours when it is unset (a dead
    worker's task waits a day); unset, this launcher uses 21600 (6 hours): three times the longest task the
    DAGs run (``train``'s ``execution_timeout``, 2 hours), and it refuses anything shorter than that task.
    RabbitMQ has no visibility timeout; its ``consumer_timeout`` (a server setting, 30 minutes by default) must
    likewise exceed 2 hours, or RabbitMQ closes the channel of a worker that runs ``train``;
  - workers, ``MLOPS_CELERY_WORKERS`` (default 1): that many ``airflow celery worker`` processes run as
    components on this host (``celery-worker-1`` ...; each runs ``AIRFLOW__CELERY__WORKER_CONCURRENCY`` tasks at
    once, default ``AIRFLOW__CORE__PARALLELISM``). ``0``: the workers run on other hosts, started there with
    ``airflow celery worker``. Each such host needs the same image (this project's code, ``dags/``, ``plugins/``,
    ``include/`` and the same requirements), the same environment as these components (the executor, broker,
    result backend, visibility timeout, ``AIRFLOW__API_AUTH__JWT_SECRET``, ``AIRFLOW__CORE__FERNET_KEY``, the
    metadata database URL, the connections, the ``MLOPS_*`` settings; set there explicitly what this launcher
    defaults here, the result backend and the visibility timeout included), the api-server's execution API at
    ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL`` (``http://<api-server host>:8080/execution/``: required, and not
    a loopback address, when the workers are elsewhere), and its task logs readable by the api-server: the
    worker serves them on ``AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT`` (8793), which must be reachable from the
    api-server at the worker's host name, or remote logging (``AIRFLOW__LOGGING__REMOTE_LOGGING``) must be on;
    the log server checks the api-server's request against ``AIRFLOW__API__SECRET_KEY``, which must be the same
    on every host (the check requires it).
    Tasks on other hosts share no disk with this one, so the lake must be on object storage
    (``MLOPS_LAKE_URL=s3://bucket/prefix``), the registry a tracking server (``MLFLOW_TRACKING_URI=http(s)://``) and
    the versions' snapshots an S3 DVC remote (``DVC_REMOTE_URL=s3://...``); the check refuses a local lake, the
    embedded registry or a local DVC remote with ``MLOPS_CELERY_WORKERS=0``.

Any other executor (Kubernetes, Edge, several at once) is refused: run those with Airflow's Helm chart.
"""

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
CELERY_WORKER = "celery-worker"  # `airflow celery worker`: celery-worker-1, celery-worker-2, ...
LOCAL, CELERY = "LocalExecutor", "CeleryExecutor"
EXECUTORS = {  # what this launcher runs, by the names AIRFLOW__CORE__EXECUTOR may give them
    LOCAL: LOCAL,
    "airflow.executors.local_executor.LocalExecutor": LOCAL,
    CELERY: CELERY,
    "airflow.providers.celery.executors.celery_executor.CeleryExecutor": CELERY,
}
BROKER_SCHEMES = ("redis://", "rediss://", "amqp://", "amqps://")
VISIBILITY_TIMEOUT_BROKERS = ("redis://", "rediss://")  # brokers that redeliver after a visibility timeout
VISIBILITY_TIMEOUT = "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"
DEFAULT_VISIBILITY_TIMEOUT_S = 21600  # 6 hours: see the module's doc
LONGEST_TASK_S = 7200  # train's execution_timeout (HorovodTrainOperator, plugins/mlops_airflow/blocks/operators.py)
MIN_JWT_SECRET = 32
MIN_PASSWORD = 16
WEAK_PASSWORDS = {"admin", "airflow", "password", "changeme", "secret", "test", "123456", "letmein"}

# Defaults for a small host; each is used only when the environment does not set it.
DEFAULTS = {
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    # the simple auth manager, a deployment DAG's runs changed by op and admin only (plugins/mlops_airflow/auth.py)
    "AIRFLOW__CORE__AUTH_MANAGER": "mlops_airflow.auth.MlopsAuthManager",
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
    if executor(env) == CELERY:
        _celery_defaults(env)
    return env


def executor(env: dict[str, str]) -> str | None:
    """``LocalExecutor`` or ``CeleryExecutor`` (from ``AIRFLOW__CORE__EXECUTOR``); None for any other."""
    return EXECUTORS.get(env.get("AIRFLOW__CORE__EXECUTOR", "").strip())


def _celery_defaults(env: dict[str, str]) -> None:
    """The CeleryExecutor's settings where the environment gives none (the module's doc says why)."""
    db = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if db.startswith(("postgresql://", "postgresql+psycopg2://")):
        env.setdefault("AIRFLOW__CELERY__RESULT_BACKEND", "db+" + db)
    if env.get("AIRFLOW__CELERY__BROKER_URL", "").startswith(VISIBILITY_TIMEOUT_BROKERS):
        env.setdefault(VISIBILITY_TIMEOUT, str(DEFAULT_VISIBILITY_TIMEOUT_S))
    env.setdefault("AIRFLOW__CELERY__WORKER_CONCURRENCY", env["AIRFLOW__CORE__PARALLELISM"])
    env.setdefault("MLOPS_CELERY_WORKERS", "1")


def celery_workers(env: dict[str, str]) -> int:
    """How many Celery workers run on this host (``MLOPS_CELERY_WORKERS``); 0 with the LocalExecutor."""
    if executor(env) != CELERY:
        return 0
    try:
        return max(0, int(env.get("MLOPS_CELERY_WORKERS", "1").strip()))
    except ValueError:  # refused by check()
        return 0


def worker_names(env: dict[str, str]) -> tuple[str, ...]:
    return tuple(f"{CELERY_WORKER}-{i}" for i in range(1, celery_workers(env) + 1))


def _client_host(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind


def serves(env: dict[str, str]) -> bool:
    """Whether the prediction service is one of this deployment's components (``MLOPS_SERVE_COMPONENT``)."""
    return _truthy(env.get("MLOPS_SERVE_COMPONENT", "true"))


def components(env: dict[str, str]) -> tuple[str, ...]:
    """What ``up`` starts: Airflow's four, the Celery workers of this host, the prediction service."""
    return (*COMPONENTS, *worker_names(env), *((SERVE,) if serves(env) else ()))


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
    if executor(env) is None:
        problems.append(
            f"AIRFLOW__CORE__EXECUTOR={env['AIRFLOW__CORE__EXECUTOR']} is not supported: this launcher runs the "
            f"LocalExecutor (tasks on this host) or the CeleryExecutor (Celery workers on this host or others); "
            "run Kubernetes or other executors with Airflow's Helm chart"
        )
    elif executor(env) == CELERY:
        problems += _celery_problems(env)
    if env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(("SimpleAuthManager", "MlopsAuthManager")):
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


def _scheme(url: str) -> str:
    """A URL's scheme, to name it in a message without its credentials."""
    return url.split("://", 1)[0] if "://" in url else "scheme-less"


def _celery_problems(env: dict[str, str]) -> list[str]:
    """What the CeleryExecutor lacks here (the module's doc says what it needs and why)."""
    from importlib.metadata import PackageNotFoundError, distribution

    problems = []
    try:
        distribution("apache-airflow-providers-celery")  # not imported: importing Airflow takes seconds
    except PackageNotFoundError:
        problems.append(
            "the CeleryExecutor needs apache-airflow-providers-celery (requirements.txt): "
            "pip install 'apache-airflow-providers-celery>=3.26,<4'"
        )
    broker = env.get("AIRFLOW__CELERY__BROKER_URL", "").strip()
    if not broker:
        problems.append(
            "AIRFLOW__CELERY__BROKER_URL is not set: the CeleryExecutor needs a broker "
            "(redis://host:6379/0 or amqp://user:password@host:5672//)"
        )
    elif not broker.startswith(BROKER_SCHEMES):
        problems.append(
            f"AIRFLOW__CELERY__BROKER_URL must name a Redis or RabbitMQ broker ({', '.join(BROKER_SCHEMES)}; "
            f"got a {_scheme(broker)!r} URL)"
        )
    backend = env.get("AIRFLOW__CELERY__RESULT_BACKEND", "").strip()
    if not backend.startswith("db+postgresql"):
        got = f"got a {_scheme(backend)!r} URL" if backend else "unset, and no PostgreSQL metadata database to use"
        problems.append(
            "AIRFLOW__CELERY__RESULT_BACKEND must be a PostgreSQL database (db+postgresql://user:password@host/db; "
            f"the executor reads its tasks' states from it; unset: the metadata database) ({got})"
        )
    if broker.startswith(VISIBILITY_TIMEOUT_BROKERS):
        raw = env.get(VISIBILITY_TIMEOUT, "").strip()
        try:
            seconds = int(raw)
        except ValueError:
            seconds = None
        if seconds is None or seconds < LONGEST_TASK_S:
            problems.append(
                f"{VISIBILITY_TIMEOUT}={raw!r}: must be a whole number of seconds of at least {LONGEST_TASK_S} "
                "(train's execution_timeout): Redis gives a task not acknowledged within it to another worker, "
                f"so a shorter one runs a long task twice (unset: {DEFAULT_VISIBILITY_TIMEOUT_S})"
            )
    try:
        workers = int(env.get("MLOPS_CELERY_WORKERS", "1").strip())
    except ValueError:
        workers = -1
    if workers < 0:
        problems.append(
            f"MLOPS_CELERY_WORKERS={env.get('MLOPS_CELERY_WORKERS')!r}: must be a whole number >= 0 (the Celery "
            "workers on this host; 0: they run on other hosts)"
        )
    elif workers == 0:
        problems += _remote_worker_problems(env)
    return problems


def _loopback(host: str) -> bool:
    import ipaddress

    if host in ("", "localhost") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _remote_worker_problems(env: dict[str, str]) -> list[str]:
    """Workers on other hosts reach the api-server over the network and share no disk with this host."""
    from urllib.parse import urlsplit

    problems = []
    api = env.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "").strip()
    if not api:
        problems.append(
            "MLOPS_CELERY_WORKERS=0 (workers on other hosts) needs AIRFLOW__CORE__EXECUTION_API_SERVER_URL: the "
            "api-server's execution API as the workers reach it (http://<api-server host>:8080/execution/)"
        )
    elif _loopback(urlsplit(api).hostname or ""):
        problems.append(
            f"AIRFLOW__CORE__EXECUTION_API_SERVER_URL names this host's loopback ({urlsplit(api).hostname}): "
            "workers on other hosts (MLOPS_CELERY_WORKERS=0) cannot reach it"
        )
    lake = env.get("MLOPS_LAKE_URL", "").strip()
    if not lake or lake.startswith("file:"):
        problems.append(
            "MLOPS_CELERY_WORKERS=0 (workers on other hosts) needs a lake every host reaches: MLOPS_LAKE_URL="
            "s3://bucket/prefix (unset or file://, each worker would write its own disk)"
        )
    snapshots = env.get("DVC_REMOTE_URL", "").strip()
    if not snapshots.startswith("s3://"):
        problems.append(
            "MLOPS_CELERY_WORKERS=0 (workers on other hosts) needs a DVC remote every host reaches for the registered "
            "versions' training sets: DVC_REMOTE_URL=s3://bucket/prefix (unset or a folder: the registering "
            "worker's own disk, where make reproduce would not find them)"
        )
    if len(env.get("AIRFLOW__API__SECRET_KEY", "").strip()) < 32:
        problems.append(
            "MLOPS_CELERY_WORKERS=0 (workers on other hosts) needs AIRFLOW__API__SECRET_KEY (32 characters or more), "
            "the same on every host: the api-server signs its requests for a task's log to the worker's log server "
            "with it (unset, each process makes its own and the UI shows no log of a task run elsewhere)"
        )
    tracking = env.get("MLFLOW_TRACKING_URI", "").strip()
    if not tracking.startswith(("http://", "https://")):
        problems.append(
            "MLOPS_CELERY_WORKERS=0 (workers on other hosts) needs a model registry every host reaches: "
            "MLFLOW_TRACKING_URI=http(s)://<tracking server> (unset: the registry embedded in each host's "
            "MLOPS_HOME)"
        )
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
