#!/usr/bin/env bash
# make report: report.md for a pull request, this branch's model (build/model, made by `dvc repro`) against the
# default branch's (REPORT_BASE, default main), fetched by DVC at that revision (never rebuilt, never the lake).
# What the report holds: include/mlops/repro/report.py. Exit status: 0 the gate passes, 1 it fails, 2 an error
# (no such revision, no model on this branch, the base's model unreachable: never read as "no model"); make report
# exits 2 on either. An earlier run's report is removed first: after an error there is none to post.
set -euo pipefail
rm -rf report.md report.json report-images
: "${DVC:?the dvc command (make report sets it)}" "${PYTHON:?the project Python (make report sets it)}"
base=${REPORT_BASE:-main}
if ! git rev-parse --verify --quiet "$base^{commit}" > /dev/null; then
  echo "make report: no revision '$base' (REPORT_BASE) in this repository: fetch it (git fetch origin $base)" >&2
  exit 2
fi
if [ ! -f build/model/model.txt ] || [ ! -f build/metrics.json ]; then
  echo "make report: no model on this branch (build/model, build/metrics.json): run dvc repro first" >&2
  exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$DVC" metrics diff "$base" --md --precision 4 > "$tmp/metrics.md"
"$DVC" params diff "$base" --md > "$tmp/params.md"
if git cat-file -e "$base:dvc.lock" 2> /dev/null && git show "$base:dvc.lock" | grep -q "path: build/model$"; then
  # the base's model as its dvc.lock names it, from the cache or the remote; unreachable is an error
  # (a remote this checkout configured for itself, scripts/dvc-remote.sh, is not in the revision's own config)
  local_config=()
  if [ -f .dvc/config.local ]; then local_config=(--config .dvc/config.local); fi
  "$DVC" get . build/model --rev "$base" "${local_config[@]}" -o "$tmp/base-model" || {
    echo "make report: the model of '$base' could not be fetched (dvc get above): is it pushed to the remote?" >&2
    exit 2
  }
  base_model=(--base-model "$tmp/base-model")
else
  base_model=(--no-base-model)  # the base has no model yet: the branch's is judged as a first model
fi
status=0
"$PYTHON" -m include.mlops.repro report --base-rev "$base" "${base_model[@]}" \
  --metrics-diff "$tmp/metrics.md" --params-diff "$tmp/params.md" --out report.md || status=$?
exit $status
