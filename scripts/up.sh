#!/usr/bin/env bash
# `make up`: the Airflow UI with this project's DAGs at http://localhost:8080 (airflow standalone).
# Settings for a 2-core laptop; a strong JWT secret kept under $MLOPS_HOME; the admin password printed.
set -euo pipefail
: "${MLOPS_HOME:?run through make up}"
secrets="$MLOPS_HOME/secrets"
mkdir -p "$secrets" && chmod 700 "$secrets"
[ -s "$secrets/jwt_secret" ] || python -c 'import secrets; print(secrets.token_urlsafe(64))' > "$secrets/jwt_secret"
export AIRFLOW__API_AUTH__JWT_SECRET="${AIRFLOW__API_AUTH__JWT_SECRET:-$(cat "$secrets/jwt_secret")}"
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW__CORE__PARALLELISM:-4}"
export AIRFLOW__SCHEDULER__PARSING_PROCESSES="${AIRFLOW__SCHEDULER__PARSING_PROCESSES:-1}"
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="${AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES:-1}"
export AIRFLOW__API__WORKERS="${AIRFLOW__API__WORKERS:-1}"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="${AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION:-True}"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}"
pwfile="$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"
( for _ in $(seq 1 120); do
    if [ -s "$pwfile" ]; then
      echo; echo "Airflow UI: http://localhost:8080   login: admin   password: $(python -c "import json,sys; print(json.load(open(sys.argv[1])).get('admin',''))" "$pwfile")"
      echo "(passwords in $pwfile; stop with Ctrl-C)"; break
    fi; sleep 2; done ) &
exec airflow standalone
