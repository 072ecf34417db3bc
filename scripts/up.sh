#!/usr/bin/env bash
# `make up`: the Airflow UI with this project's DAGs at http://localhost:8080 (airflow standalone).
# Settings for a 2-core laptop; a strong JWT secret kept under $MLOPS_HOME; the admin password printed.
# It listens on 127.0.0.1 only: AIRFLOW__API__HOST=0.0.0.0 (and a real auth manager) to open it to the network;
# AIRFLOW__API__PORT for another port. Says so when the lake holds no drop yet, and how to publish one.
set -euo pipefail
: "${MLOPS_HOME:?run through make up}"
: "${AIRFLOW_HOME:?run through make up}"
secrets="$MLOPS_HOME/secrets"
mkdir -p "$secrets" "$AIRFLOW_HOME"
# the secrets, Airflow's home and its SQLite database (connections, variables) to this user alone
"$(dirname "$0")/private.sh" "$secrets" "$AIRFLOW_HOME" "$AIRFLOW_HOME/airflow.db"
[ -s "$secrets/jwt_secret" ] || python -c 'import secrets; print(secrets.token_urlsafe(64))' > "$secrets/jwt_secret"
export AIRFLOW__API_AUTH__JWT_SECRET="${AIRFLOW__API_AUTH__JWT_SECRET:-$(cat "$secrets/jwt_secret")}"
export AIRFLOW__API__HOST="${AIRFLOW__API__HOST:-127.0.0.1}"
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
# the tasks reach the api-server's execution API through its base URL (otherwise localhost:8080, whatever the port)
export AIRFLOW__API__BASE_URL="${AIRFLOW__API__BASE_URL:-http://127.0.0.1:$AIRFLOW__API__PORT}"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export MLOPS_INGEST_DEADLINE_S="${MLOPS_INGEST_DEADLINE_S:-28800}"   # a day not ingested within 8 h: Slack
export AIRFLOW__SCHEDULER__PARSING_PROCESSES="${AIRFLOW__SCHEDULER__PARSING_PROCESSES:-1}"
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="${AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES:-1}"
export AIRFLOW__API__WORKERS="${AIRFLOW__API__WORKERS:-1}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
case "$AIRFLOW__API__HOST" in
  127.0.0.1|localhost|::1) url="http://localhost:$AIRFLOW__API__PORT" ;;
  0.0.0.0|::) url="http://localhost:$AIRFLOW__API__PORT (and every address of this machine: AIRFLOW__API__HOST=$AIRFLOW__API__HOST)" ;;
  *) url="http://$AIRFLOW__API__HOST:$AIRFLOW__API__PORT" ;;
esac

# The replay (`make replay`, MLOPS_REPLAY=true): the prediction service runs beside Airflow, with a bearer token
# generated once into $MLOPS_HOME/secrets/serve_token, so that simulate_upstream's traffic reaches it.
serve_pid=""
case "${MLOPS_REPLAY:-}" in
  1|true|True|yes|on)
    umask_was=$(umask); umask 077
    [ -s "$secrets/serve_token" ] || python -c 'import secrets; print(secrets.token_urlsafe(48))' > "$secrets/serve_token"
    umask "$umask_was"
    export MLOPS_SERVE_TOKEN_FILE="${MLOPS_SERVE_TOKEN_FILE:-$secrets/serve_token}"
    export MLOPS_SERVE_PORT="${MLOPS_SERVE_PORT:-8000}"
    export MLOPS_SERVE_URL="${MLOPS_SERVE_URL:-http://127.0.0.1:$MLOPS_SERVE_PORT}"
    # the service refuses an empty MLflow store (a wrong MLOPS_HOME, usually); this deployment's own is created
    # here, as training would, so that the service waits for its first model instead of exiting
    [ -n "${MLFLOW_TRACKING_URI:-}" ] || python -c 'from include.mlops.core import registry; registry.versions()'
    python -m include.mlops.serve.app > "$MLOPS_HOME/serve.log" 2>&1 &
    serve_pid=$!
    echo "replay of $MLOPS_START_DATE .. ${MLOPS_END_DATE:-(no end)}: prediction service at $MLOPS_SERVE_URL" \
      "(token in $MLOPS_SERVE_TOKEN_FILE, log $MLOPS_HOME/serve.log); the DAGs start unpaused"
    ;;
esac

# an empty lake: nothing for ingest_flights to find until upstream drops land
[ -n "$serve_pid" ] || python - <<'EOF' || true
from include.mlops.core.config import Settings
from include.mlops.core.lake import Lake

url = Settings.from_env().lake_url
try:
    lake = Lake(url)
    empty = not lake.ls("landing") and not lake.ls("curated")
except Exception as exc:  # an unreachable S3 lake: the DAGs will say so; this is only a hint
    print(f"(could not look into the lake at {url}: {type(exc).__name__})")
    empty = False
if empty:
    from include.mlops.core.config import ScheduleConfig
    from include.mlops.core.schema import ingestion_groups

    first = ScheduleConfig.from_env().window()[0].isoformat()
    dags = ", ".join(f"ingest_{g}" for g in ingestion_groups())
    one = f"ingest_{next(iter(ingestion_groups()))}"
    print(f"""
The lake at {url} holds no drop yet: {dags} find nothing to ingest (their sensors wait for a drop).
Publish upstream drops (one folder per data set and day): in the UI, trigger simulate_upstream (the upstream
simulator) with a range from {first}; or, in a shell, two weeks of each declared data set:
    python -m include.mlops.simulate.upstream publish {first} --days 14
then, in the UI, unpause {one} and trigger it with a logical date of {first} (or `airflow dags test
{one} {first}` in another shell); `make demo` runs the flights' whole lifecycle instead.
""")
EOF

pwfile="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
( for _ in $(seq 1 120); do
    if [ -s "$pwfile" ]; then
      "$(dirname "$0")/private.sh" "$AIRFLOW_HOME/airflow.db" "$pwfile"  # made by standalone on a first start
      echo; echo "Airflow UI: $url   login: admin   password: $(python -c "import json,sys; print(json.load(open(sys.argv[1])).get('admin',''))" "$pwfile")"
      echo "(passwords in $pwfile; stop with Ctrl-C)"; break
    fi; sleep 2; done ) &
# Ctrl-C in a terminal signals the whole foreground process group; airflow standalone stops cleanly when it alone
# gets SIGINT, but when its scheduler and LocalExecutor workers get it too the scheduler hangs, workers and all.
# So standalone runs as a job of its own process group (job control on: `set -m`, which also keeps SIGINT from
# being ignored in it) and this script passes Ctrl-C (and SIGTERM) on to it alone.
# Its own shutdown can still hang (seen twice on a loaded machine when Ctrl-C came as asset-triggered runs were
# starting their tasks): after MLOPS_STOP_GRACE_S seconds (30) the whole group gets SIGTERM, 10 s later SIGKILL,
# so that Ctrl-C always ends it.
set -m
airflow standalone &
standalone=$!
watchdog=""
stop() {
  kill -INT "$standalone" 2>/dev/null || true
  if [ -z "$watchdog" ]; then
    ( trap - INT TERM
      sleep "${MLOPS_STOP_GRACE_S:-30}"
      kill -0 "$standalone" 2>/dev/null || exit 0
      echo "airflow standalone still running ${MLOPS_STOP_GRACE_S:-30} s after Ctrl-C: terminating its processes" >&2
      kill -TERM -- "-$standalone" 2>/dev/null || true
      sleep 10
      kill -KILL -- "-$standalone" 2>/dev/null || true ) &
    watchdog=$!
  fi
}
trap stop INT TERM
while kill -0 "$standalone" 2>/dev/null; do wait "$standalone" || true; done
if [ -n "$watchdog" ]; then kill -- "-$watchdog" 2>/dev/null || true; wait "$watchdog" 2>/dev/null || true; fi
if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
