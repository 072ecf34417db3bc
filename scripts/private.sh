#!/usr/bin/env bash
# Leave what holds secrets, the metadata database or requests to their owner alone, whatever the umask made
# them: each folder named 0700, each file 0600 (a path that does not exist is skipped). Airflow's SQLite
# database (airflow.db) holds its connections and variables; MLOPS_HOME/secrets the generated keys and tokens.
# Used by the Makefile's set-up (after `airflow db migrate`) and by scripts/up.sh.
#     scripts/private.sh PATH...
set -euo pipefail
for path in "$@"; do
  if [ -d "$path" ]; then
    chmod 700 "$path"
  elif [ -e "$path" ]; then
    chmod 600 "$path"
  fi
done
