#!/usr/bin/env python3
"""A production-shaped Airflow: scheduler, dag-processor, triggerer and api-server as separate processes,
PostgreSQL metadata database, every setting from the environment; the LocalExecutor (tasks on this host) or the
CeleryExecutor (``MLOPS_CELERY_WORKERS`` Celery workers as components on this host, default 1, or 0 with the
workers on other hosts); and the prediction service (``python -m include.mlops.serve.app``) as one more process
on the same MLOPS_HOME, with its bearer token.

    python scripts/prod/airflow_prod.py check            # validate the configuration, start nothing
    python scripts/prod/airflow_prod.py up [--detach]    # migrate, then start the components
    python scripts/prod/airflow_prod.py status
    python scripts/prod/airflow_prod.py stop             # SIGTERM every component and its children, then wait

It refuses to start (exit 2, naming each problem) when the configuration is not fit for production:

- ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` missing or not PostgreSQL;
- ``AIRFLOW__API_AUTH__JWT_SECRET`` missing or shorter than 32 characters;
- ``AIRFLOW__CORE__FERNET_KEY`` missing or not a Fernet key (connections and variables would sit unencrypted
  in the database);
- an executor other than the LocalExecutor or the CeleryExecutor (Kubernetes and others: Airflow's Helm chart);
- with the CeleryExecutor: no provider package, no broker (``AIRFLOW__CELERY__BROKER_URL``, Redis or RabbitMQ),
  a result backend that is not a PostgreSQL database (``AIRFLOW__CELERY__RESULT_BACKEND``, default: the metadata
  database), a Redis ``visibility_timeout`` shorter than the longest task
  (``AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT``, default 21600 s), ``MLOPS_CELERY_WORKERS``
  not a whole number; and with ``MLOPS_CELERY_WORKERS=0`` (workers on other hosts) no
  ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL`` they can reach, a local lake or the embedded registry. What the
  workers' hosts need: ``prod_config.py``'s doc;
- the simple auth manager with ``simple_auth_manager_all_admins`` (no login at all), or a user whose password
  is a default or shorter than 16 characters;
- no token for the prediction service (``MLOPS_SERVE_TOKEN``, or the file ``MLOPS_SERVE_TOKEN_FILE``), or one
  shorter than 32 characters.

The service binds ``MLOPS_SERVE_HOST``:``MLOPS_SERVE_PORT`` (127.0.0.1:8000); the Airflow components get
``MLOPS_SERVE_URL`` (that address, unless set) and the same token, so ``simulate_upstream``'s traffic reaches it.
``MLOPS_SERVE_COMPONENT=false`` leaves the service out (one that runs elsewhere, named by ``MLOPS_SERVE_URL``).

With the CeleryExecutor, ``up`` first makes sure the broker answers, starts each local worker as
``airflow celery worker --celery-hostname celery-worker-<n>.<host>`` (the first one serves this host's task logs
on ``AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT``) and is healthy once every local worker answers a ping over the
broker; ``status`` lists the workers that answer, local or not.

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
import signal
import sys
import time

from prod_config import (  # noqa: E402
    CELERY,
    check,
    create_database,
    environment,
    executor,
    serve_url,
    serves,
    users,
    write_passwords,
)
from supervisor import (  # noqa: E402
    _alive,
    _run_dir,
    celery_ping,
    health,
    healthy,
    prepare,
    serve_health,
    start,
    stop,
    wait_healthy,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("check", "up", "status", "stop"))
    ap.add_argument("--detach", action="store_true", help="return once healthy, leaving the components running")
    ap.add_argument("--create-db", action="store_true", help="create the PostgreSQL database if it is missing")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for a healthy deployment")
    ap.add_argument(
        "--grace",
        type=float,
        default=60,
        help="stop: seconds to wait after SIGTERM before killing what is still running",
    )
    args = ap.parse_args(argv)
    env = environment()

    if args.command == "stop":
        killed = stop(env, timeout_s=args.grace)
        print("stopped" + (f" (killed {len(killed)} process(es) that ignored SIGTERM)" if killed else ""))
        return 0
    if args.command == "status":
        h = health(env)
        print(json.dumps(h, indent=2) if h else f"no api-server at {env['AIRFLOW__API__BASE_URL']}")
        if executor(env) == CELERY and env.get("AIRFLOW__CELERY__BROKER_URL"):
            print(f"Celery workers answering: {', '.join(sorted(celery_ping(env))) or 'none'}")
        if not serves(env):
            return 0 if healthy(h) else 1
        s = serve_health(env)
        print(f"prediction service at {serve_url(env)}: " + (s["status"] if s else "does not answer"))
        return 0 if healthy(h) and s is not None else 1

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
    if serves(env):
        token_from = "MLOPS_SERVE_TOKEN" if env.get("MLOPS_SERVE_TOKEN", "").strip() else env["MLOPS_SERVE_TOKEN_FILE"]
        print(f"prediction service at {serve_url(env)}  (bearer token in {token_from})")
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
