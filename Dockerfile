# The project's image: Astro Runtime for Airflow 3 (Airflow 3.3.x, Python 3.11) plus this project, built in two
# stages so that the compiler never reaches the image and a change to the code never rebuilds Horovod.
# `docker build -t <registry>/mlops-airflow:<tag> .`, or `astro dev start` / `astro deploy` (the Astro CLI).

# --- builder: the Horovod 0.28.1 wheel -------------------------------------------------------------------------
# Horovod 0.28.1 has no wheels: it is built here (Gloo + PyTorch CPU, with the C++17 compiler wrapper) from the
# two files the build needs and nothing else, so this stage stays cached until one of them changes.
# python:3.11-slim-bookworm, not the Runtime image: the Runtime image's ONBUILD steps would run here too (pip
# install requirements.txt, COPY the whole project), and any change to the project would rebuild Horovod. The
# same Python minor version as the Runtime image (3.11: the wheel's cp311 ABI) on Debian bookworm.
FROM python:3.11-slim-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
# The CPU build of torch comes from PyTorch's CPU index (the script refuses a CUDA build). Build with
# --build-arg TORCH_INDEX_URL=<your mirror> where that index is out of reach.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY scripts/install_horovod.sh scripts/cxx17 /build/scripts/
RUN MLOPS_TORCH_INDEX_URL="${TORCH_INDEX_URL}" MLOPS_WHEELHOUSE=/wheels PIP_NO_CACHE_DIR=1 \
    /build/scripts/install_horovod.sh python

# --- the image -------------------------------------------------------------------------------------------------
# A literal image reference (the Astro CLI reads this line: `astro dev upgrade-test` rewrites it): the Runtime
# release that ships Airflow 3.3.2, in its Python 3.11 distribution (check with `astro dev upgrade-test` or the
# Runtime release notes when changing it).
# Its ONBUILD steps run first, right after this line: they install packages.txt with apt (empty: this image
# needs no system package, and no compiler), install requirements.txt with pip, and copy the project (what
# .dockerignore leaves: dags/, plugins/, include/, expectations/, the requirements and constraints files, ...)
# into /usr/local/airflow, the working directory, which is on PYTHONPATH.
FROM astrocrpublic.azurecr.io/runtime:3.3-2-python-3.11

ENV MLOPS_HOME=/usr/local/airflow/.mlops \
    GX_ANALYTICS_ENABLED=false \
    MLOPS_INGEST_DEADLINE_S=28800 \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
# Production settings come from the environment: MLOPS_LAKE_URL=s3://<bucket>/<prefix>, the aws_default and
# slack_default connections (AIRFLOW_CONN_* or a secrets backend), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN,
# AIRFLOW__API_AUTH__JWT_SECRET. Nothing secret is baked into the image.

# torch (the CPU build, the one Horovod was built against) from PyTorch's index, the Horovod wheel from the
# builder, then the project's requirements (the ONBUILD step installed them unconstrained), torch's dependencies
# and Horovod's own run-time requirements at the versions of constraints-3.11.txt (the installed torch+cpu
# satisfies its torch==2.13.0), and a check that the result imports.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY --from=builder /wheels/ /tmp/horovod-wheels/
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" torch==2.13.0 \
 && pip install --no-cache-dir --no-deps --find-links /tmp/horovod-wheels horovod==0.28.1 \
 && pip install --no-cache-dir -r requirements.txt -c constraints-3.11.txt \
      torch==2.13.0 cloudpickle psutil pyyaml packaging \
 && python -c "import torch, horovod.torch as hvd; assert torch.version.cuda is None and hvd.gloo_built(), torch.__version__"
