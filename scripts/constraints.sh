#!/usr/bin/env bash
# Regenerates constraints-3.11.txt (`make constraints`): the complete, resolved set of distributions that
# `make setup` puts into .venv, pinned, the way Airflow makes its own constraints files. Airflow publishes one per
# release (constraints-3.3.2/constraints-3.11.txt in apache/airflow); this one is ours because it also covers the
# project's own requirements and test tools, resolved together with Airflow.
#
# In a fresh virtualenv in a temporary folder, with the same steps as `make setup`:
#   1. pip install -r requirements-dev.txt                (Airflow, the providers, the runtime and test requirements)
#   2. pip install torch==<TORCH_VERSION of install_horovod.sh>, its CPU build (the script's check, and its
#      MLOPS_TORCH_INDEX_URL), then what install_horovod.sh installs besides: numpy cmake cloudpickle psutil pyyaml
#      packaging
# then `pip freeze --all`, less pip, setuptools and wheel, with a header; nothing else of the old file is kept.
# Horovod itself is left out: it has no wheels and install_horovod.sh builds it from source, pinned there.
# torch's local build label (+cpu) is dropped: torch==X matches X+cpu and the CUDA build alike, and which build
# is used is install_horovod.sh's decision.
# Takes a few minutes (a complete install). Run it after changing requirements*.txt or TORCH_VERSION.
#   scripts/constraints.sh [OUTPUT]          (default: constraints-3.11.txt beside the requirements; PYTHON=python3.11)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/constraints-3.11.txt}"
PYTHON="${PYTHON:-python3.11}"
AIRFLOW_PIN=$(grep -E '^apache-airflow(\[[^]]*\])?==' "$ROOT/requirements-dev.txt" | sed -E 's/.*==//')
TORCH_VERSION=$(sed -nE 's/^TORCH_VERSION=([0-9.]+)$/\1/p' "$ROOT/scripts/install_horovod.sh")
[ -n "$AIRFLOW_PIN" ] || { echo "error: no apache-airflow==X.Y.Z in requirements-dev.txt" >&2; exit 1; }
[ -n "$TORCH_VERSION" ] || { echo "error: no TORCH_VERSION= in scripts/install_horovod.sh" >&2; exit 1; }
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = 3.11 ] || { echo "error: $PYTHON is Python $pyver; the constraints are for 3.11 (PYTHON=...)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
"$PYTHON" -m venv "$tmp/venv"
PY="$tmp/venv/bin/python"
# the Makefile's steps, without the constraints they are about to replace (PIP_CONSTRAINT from outside neither)
unset PIP_CONSTRAINT
cd "$ROOT"
"$PY" -m pip install --quiet --upgrade "pip>=25"
"$PY" -m pip install --quiet -r requirements-dev.txt
torch_req=("torch==$TORCH_VERSION")
[ -n "${MLOPS_TORCH_INDEX_URL:-}" ] && torch_req+=(--index-url "$MLOPS_TORCH_INDEX_URL")
report="$tmp/torch.json"
"$PY" -m pip install --quiet --dry-run --report "$report" "${torch_req[@]}"
cuda=$("$PY" -c '
import json, sys
names = [i["metadata"]["name"] + " " + i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]]
print(" ".join(n for n in names if n.lower().startswith(("nvidia-", "cuda-", "triton ")) or "+cu" in n))' "$report")
if [ -n "$cuda" ]; then
  echo "error: torch==$TORCH_VERSION would come as a CUDA build ($cuda); the constraints are made with the CPU" >&2
  echo "build: set MLOPS_TORCH_INDEX_URL (scripts/install_horovod.sh says where to get it)" >&2
  exit 1
fi
"$PY" -m pip install --quiet "${torch_req[@]}"
"$PY" -m pip install --quiet numpy cmake cloudpickle psutil pyyaml packaging
"$PY" -m pip check

frozen="$tmp/frozen.txt"
"$PY" -m pip freeze --all --exclude-editable >"$frozen"
"$PY" - "$frozen" "$tmp/body.txt" "$tmp/caps.txt" requirements.txt requirements-dev.txt <<'EOF'
import importlib.metadata as md
import re
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

frozen, body, caps, *req_files = sys.argv[1:]
pins, dropped = {}, []
for line in open(frozen).read().splitlines():
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;@]+)", line.strip())
    if not m:  # a URL, a local path, an editable checkout: nothing that could be pinned anywhere else
        sys.exit(f"error: pip freeze gave {line!r}, not name==version")
    name, version = m.groups()
    if canonicalize_name(name) in ("pip", "setuptools", "wheel"):
        continue
    if "+" in version:
        dropped.append(f"{name} {version}")
        version = version.split("+")[0]
    pins[canonicalize_name(name)] = f"{name}=={version}"
with open(body, "w") as out:
    out.write("".join(f"# local build label dropped: {d} (pinned without it)\n" for d in dropped))
    out.write("#\n" + "".join(pins[k] + "\n" for k in sorted(pins)))

# every upper bound or exact pin that Airflow's own distributions put on a requirement the project names itself,
# and the project's requirements that Airflow leaves open above (there the project's range alone chooses)
direct = {}
for f in req_files:
    for line in open(f):
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            direct[canonicalize_name(req.name)] = req
bounded, found = set(), []
for dist in md.distributions():
    owner = canonicalize_name(dist.metadata["Name"])
    if not owner.startswith("apache-airflow"):
        continue
    extras = [""] + (dist.metadata.get_all("Provides-Extra") or [])
    for text in dist.requires or []:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name not in direct or not any(s.operator in ("<", "<=", "==", "~=", "===") for s in req.specifier):
            continue
        active = [e for e in extras if req.marker is None or req.marker.evaluate({"extra": e})]
        if not active:
            continue  # another Python
        bounded.add(name)
        pinned = pins[name].split("==")[1]
        ok = req.specifier.contains(pinned, prereleases=True)
        where = f"{owner} {dist.version}" + ("" if "" in active else f", extra {active[0]}")
        found.append(
            f"#   {req.name}: Airflow {req.specifier} ({where}); the project {direct[name].specifier or 'any'};"
            f" pinned {pinned}{'' if ok else ', OUTSIDE Airflow'}\n"
        )
        if not ok and "" in active:
            sys.exit(f"error: {found[-1].strip()}")
open_ = [
    f"#   {req}: {pins[name].split('==')[1]}\n"
    for name, req in sorted(direct.items())
    if name not in bounded and not name.startswith("apache-airflow") and req.specifier
]
with open(caps, "w") as out:
    out.write("".join(sorted(set(found))) or "#   none\n")
    out.write("# Requirements of the project that Airflow leaves without an upper bound (the project's range, pinned):\n")
    out.write("".join(open_))
EOF
elapsed=$(( $(date +%s) - start ))
pip_version=$("$PY" -m pip --version | cut -d' ' -f2)
{
  cat <<EOF
#
# This constraints file was automatically generated on $(date -u +%Y-%m-%dT%H:%M:%SZ)
# by scripts/constraints.sh (\`make constraints\`; regenerate with \`make constraints\`) in ${elapsed} s,
# for apache-airflow ${AIRFLOW_PIN} and Python ${pyver} (pip ${pip_version}, $(uname -m) Linux).
# It is the \`pip freeze --all\` (less pip, setuptools, wheel) of a fresh virtualenv after the steps of \`make setup\`:
#   pip install -r requirements-dev.txt       (apache-airflow[postgres]==${AIRFLOW_PIN}, the providers, the runtime
#                                              requirements of requirements.txt, the test tools)
#   pip install torch==${TORCH_VERSION}                  (CPU build, as scripts/install_horovod.sh installs it)
#   pip install numpy cmake cloudpickle psutil pyyaml packaging   (the rest of what install_horovod.sh installs)
# Horovod is not listed: it ships no wheels, scripts/install_horovod.sh builds it from source (version pinned there).
# The official file (https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_PIN}/constraints-3.11.txt)
# covers Airflow and every provider, but not this project's own requirements; this one is resolved with them.
#
# Used by: \`make setup\` (pip install -r requirements-dev.txt -c constraints-3.11.txt; install_horovod.sh under
# PIP_CONSTRAINT) and the image (pip install -r requirements.txt -c constraints-3.11.txt).
#
# constraints-overrides: where the project's own pins (requirements*.txt) choose over Airflow ${AIRFLOW_PIN}.
# Upper bounds and exact pins that Airflow's distributions themselves put on requirements the project names, the
# project's range and the pin (the pin lies within both: pip check passed). Where the project's range is the
# narrower one, it overrides what Airflow would pick; the reason is the comment beside it in requirements*.txt.
EOF
  cat "$tmp/caps.txt"
  cat <<EOF
# Those ranges are the versions the DAGs, the lake's Parquet files, the validation suites, the model registry and
# the tests are written and measured against (pandas 3, NumPy 2). Airflow's published constraints may pin older
# lines of some of them for a release (its 3.0 files pin pandas 2.1.4 and numpy 1.26.4); this file does not.
EOF
  cat "$tmp/body.txt"
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT: $(grep -cE '^[A-Za-z0-9]' "$OUT") pins in ${elapsed} s"
