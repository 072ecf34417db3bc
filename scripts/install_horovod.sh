#!/usr/bin/env bash
# Installs Horovod 0.28.1 (Gloo, PyTorch CPU, no MPI/TensorFlow/MXNet) into the given Python environment.
# Horovod ships as source only; building it takes about 6 minutes on 2 cores, so the wheel is built once per
# machine into a wheelhouse (default ~/.cache/mlops/wheels, MLOPS_WHEELHOUSE to change) and reused by every
# later set-up, clone and venv on that machine.
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
# torch first: Horovod's build imports it. The CPU build of 2.13.0 (a local file on the project's machines).
"$PY" -m pip install --quiet "torch==$TORCH_VERSION" numpy cmake

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
