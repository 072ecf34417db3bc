#!/usr/bin/env bash
# The DVC remote of this checkout from the environment (CI's secrets): DVC_REMOTE_URL (s3://bucket/path) becomes
# the default remote, DVC_REMOTE_ENDPOINT its endpoint (an S3-compatible server: MinIO, Ceph, moto; empty for
# AWS). Written to .dvc/config.local, which git ignores; the credentials stay in the environment (AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY), never in a file. Without DVC_REMOTE_URL the committed default (a folder beside the
# project, .dvc-storage) stays.
set -euo pipefail
DVC=${DVC:-.venv-dvc/bin/dvc}
if [ -z "${DVC_REMOTE_URL:-}" ]; then
  echo "DVC_REMOTE_URL is not set: the default remote stays ($("$DVC" remote default))"
  exit 0
fi
case "$DVC_REMOTE_URL" in
  s3://?*) ;;
  *) echo "DVC_REMOTE_URL=$DVC_REMOTE_URL: an s3://bucket/path is expected" >&2; exit 2 ;;
esac
"$DVC" remote add --local --force --default ci "$DVC_REMOTE_URL"
if [ -n "${DVC_REMOTE_ENDPOINT:-}" ]; then
  "$DVC" remote modify --local ci endpointurl "$DVC_REMOTE_ENDPOINT"
fi
echo "DVC remote: ci at $DVC_REMOTE_URL${DVC_REMOTE_ENDPOINT:+ ($DVC_REMOTE_ENDPOINT)}"
