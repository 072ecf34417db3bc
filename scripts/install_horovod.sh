#!/usr/bin/env bash
# Installs Horovod 0.28.1 (Gloo, PyTorch CPU, no MPI/TensorFlow/MXNet) into the given Python environment.
# Horovod ships as source only; building it takes about 6 minutes on 2 cores, so the wheel is built once per
# machine into a wheelhouse (default ~/.cache/mlops/wheels, MLOPS_WHEELHOUSE to change) and reused by every
# later set-up, clone and venv on that machine.
#
# Horovod builds against torch 2.13.0, and it must be the CPU build: the default index of an ordinary Linux
# machine (PyPI) serves the CUDA build, several GB of nvidia-* packages. Where torch comes from:
#   MLOPS_TORCH_INDEX_URL   an index serving the CPU build, e.g. https://download.pytorch.org/whl/cpu (PyTorch's
#                           own) or your mirror of it; unset: pip's configured index, which on the project's
#                           machines offers the CPU wheel (torch-2.13.0+cpu) from a local folder
#   MLOPS_TORCH_ALLOW_CUDA  1 to accept a CUDA build; otherwise the script stops before downloading one (and
#                           refuses a CUDA torch that is already installed), saying how to get the CPU build
#   scripts/install_horovod.sh [PYTHON]
set -euo pipefail
PY="$(cd "$(dirname "$(command -v "${1:-python}")")" && pwd)/$(basename "${1:-python}")"
HERE="$(cd "$(dirname "$0")" && pwd)"
HOROVOD_VERSION=0.28.1
TORCH_VERSION=2.13.0
WHEELHOUSE="${MLOPS_WHEELHOUSE:-$HOME/.cache/mlops/wheels}"
mkdir -p "$WHEELHOUSE"

if "$PY" -c "import horovod.torch, sys; sys.exit(0 if horovod.__version__ == '$HOROVOD_VERSION' else 1)" 2>/dev/null; then
  echo "horovod $HOROVOD_VERSION already installed"; exit 0
fi
# torch first: Horovod's build imports it. The CPU build of 2.13.0 (see the top of this file).
TORCH_INDEX="${MLOPS_TORCH_INDEX_URL:-}"
ALLOW_CUDA="${MLOPS_TORCH_ALLOW_CUDA:-0}"
torch_req=("torch==$TORCH_VERSION")
[ -n "$TORCH_INDEX" ] && torch_req+=(--index-url "$TORCH_INDEX")
from="$TORCH_INDEX"
[ -n "$from" ] || from="the index pip is configured with (PIP_INDEX_URL, pip.conf)"
cpu_hint="Horovod here builds against the CPU build of torch $TORCH_VERSION. Get it with
  MLOPS_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu make setup     (PyTorch's CPU index, or your mirror of it)
or download torch-$TORCH_VERSION+cpu-<python>-<platform>.whl from there into a folder and set PIP_FIND_LINKS to it.
Set MLOPS_TORCH_ALLOW_CUDA=1 to use a CUDA build anyway."
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  # ask pip what it would install, before it downloads anything (package metadata only)
  report=$(mktemp)
  "$PY" -m pip install --quiet --dry-run --ignore-installed --report "$report" "${torch_req[@]}"
  cuda=$("$PY" -c '
import json, sys
names = [i["metadata"]["name"] + " " + i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]]
cuda = [n for n in names if n.lower().startswith(("nvidia-", "cuda-", "triton ")) or (n.startswith("torch ") and "+cu" in n)]
print(", ".join(cuda[:6]) + (" and %d more" % (len(cuda) - 6) if len(cuda) > 6 else ""))' "$report")
  rm -f "$report"
  if [ -n "$cuda" ] && [ "$ALLOW_CUDA" != 1 ]; then
    echo "error: torch==$TORCH_VERSION from $from is a CUDA build: pip would install $cuda (several GB)." >&2
    echo "$cpu_hint" >&2
    exit 1
  fi
  "$PY" -m pip install --quiet "${torch_req[@]}"
fi
cuda=$("$PY" -c "import torch; print(torch.version.cuda or '')")
if [ -n "$cuda" ] && [ "$ALLOW_CUDA" != 1 ]; then
  echo "error: the installed torch $("$PY" -c 'import torch; print(torch.__version__)') is a CUDA build (CUDA $cuda)." >&2
  echo "Remove it (\"$PY\" -m pip uninstall -y torch) and rerun. $cpu_hint" >&2
  exit 1
fi
echo "torch $("$PY" -c 'import torch; print(torch.__version__)') ($([ -n "$cuda" ] && echo "CUDA $cuda" || echo CPU build))"
"$PY" -m pip install --quiet numpy cmake

if ! ls "$WHEELHOUSE"/horovod-$HOROVOD_VERSION-*.whl >/dev/null 2>&1; then
  echo "building horovod $HOROVOD_VERSION (once per machine, about 6 minutes on 2 cores) into $WHEELHOUSE"
  start=$(date +%s)
  build=$(mktemp -d)
  HOROVOD_WITH_PYTORCH=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITH_GLOO=1 \
  HOROVOD_WITHOUT_MPI=1 HOROVOD_CPU_OPERATIONS=gloo CXX="$HERE/cxx17" MAKEFLAGS="-j$(nproc)" \
    "$PY" -m pip wheel --quiet --no-deps --no-build-isolation --no-binary horovod \
      -w "$build" "horovod==$HOROVOD_VERSION"
  # the extension carries 60 MB of debug symbols: strip them (1 MB wheel, same code); `wheel pack` rewrites RECORD
  "$PY" -m pip install --quiet wheel
  ( cd "$build" && whl=$(ls horovod-*.whl) && "$PY" -m wheel unpack -d u "$whl" >/dev/null \
    && find u -name '*.so' -exec strip --strip-debug {} + && rm "$whl" && "$PY" -m wheel pack -d . u/* >/dev/null \
    && rm -rf u )
  mv "$build"/horovod-*.whl "$WHEELHOUSE"/
  rm -rf "$build"
  echo "horovod built in $(( $(date +%s) - start )) s"
fi
"$PY" -m pip install --quiet --no-deps --find-links "$WHEELHOUSE" "horovod==$HOROVOD_VERSION"
# horovod's own run-time requirements (it declares some, not numpy)
"$PY" -m pip install --quiet cloudpickle psutil pyyaml packaging
"$PY" -c "import horovod.torch as hvd; print('horovod', __import__('horovod').__version__, 'gloo built:', hvd.gloo_built())"
