#!/usr/bin/env bash
# `make up-prod`: the production-shaped deployment on this machine (scripts/prod/airflow_prod.py), with local
# conveniences only where the environment gives nothing: the machine's PostgreSQL (database created if
# missing), a JWT secret, a Fernet key and the prediction service's bearer token generated once into
# $MLOPS_HOME/secrets (mode 0600), never defaults; the token is passed by its file, never printed. With
# AIRFLOW__CORE__EXECUTOR=CeleryExecutor, the machine's Redis (redis://127.0.0.1:6379/0) is the broker unless
# AIRFLOW__CELERY__BROKER_URL names one; MLOPS_CELERY_WORKERS (default 1) workers run here.
# Everything set in the environment wins. Stop with Ctrl-C, or `make down-prod` from another shell.
set -euo pipefail
: "${MLOPS_HOME:?run through make up-prod}"
python=${PYTHON:-python}
secrets="$MLOPS_HOME/secrets"
mkdir -p "$secrets" && chmod 700 "$secrets"
umask 077
[ -s "$secrets/jwt_secret" ] || "$python" -c 'import secrets; print(secrets.token_urlsafe(64))' > "$secrets/jwt_secret"
[ -s "$secrets/fernet_key" ] || "$python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' > "$secrets/fernet_key"
export AIRFLOW__API_AUTH__JWT_SECRET="${AIRFLOW__API_AUTH__JWT_SECRET:-$(cat "$secrets/jwt_secret")}"
export AIRFLOW__CORE__FERNET_KEY="${AIRFLOW__CORE__FERNET_KEY:-$(cat "$secrets/fernet_key")}"
if [ -z "${MLOPS_SERVE_TOKEN:-}" ] && [ -z "${MLOPS_SERVE_TOKEN_FILE:-}" ]; then
  [ -s "$secrets/serve_token" ] || "$python" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$secrets/serve_token"
  export MLOPS_SERVE_TOKEN_FILE="$secrets/serve_token"
fi
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-postgresql+psycopg2://postgres@127.0.0.1:5432/mlops_airflow}"
case "${AIRFLOW__CORE__EXECUTOR:-}" in
  CeleryExecutor|*.CeleryExecutor) export AIRFLOW__CELERY__BROKER_URL="${AIRFLOW__CELERY__BROKER_URL:-redis://127.0.0.1:6379/0}" ;;
esac
exec "$python" "$(dirname "$0")/airflow_prod.py" up --create-db "$@"
