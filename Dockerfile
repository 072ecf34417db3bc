# The project's image: Astro Runtime for Airflow 3 (Airflow 3.3.x, Python 3.11) plus this project.
# Astro Runtime's ONBUILD steps install packages.txt (apt) and requirements.txt (pip) and copy the project
# (dags/, plugins/, include/, expectations/) into /usr/local/airflow, which is on PYTHONPATH.
# Pick the Runtime release that ships Airflow 3.3.2 (`astro dev upgrade-test` or the Runtime release notes).
ARG RUNTIME_IMAGE=astrocrpublic.azurecr.io/runtime:3.3-2
FROM ${RUNTIME_IMAGE}

ENV MLOPS_HOME=/usr/local/airflow/.mlops \
    GX_ANALYTICS_ENABLED=false \
    MLOPS_INGEST_DEADLINE_S=28800 \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
# Production settings come from the environment: MLOPS_LAKE_URL=s3://<bucket>/<prefix>, the aws_default and
# slack_default connections (AIRFLOW_CONN_* or a secrets backend), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN,
# AIRFLOW__API_AUTH__JWT_SECRET. Nothing secret is baked into the image.

# Horovod 0.28.1 has no wheels: build it here once (Gloo + PyTorch CPU), with the C++17 compiler wrapper.
# packages.txt brings the compiler and cmake; the CPU build of torch comes from PyTorch's CPU index (the script
# refuses a CUDA build). Build with --build-arg TORCH_INDEX_URL=<your mirror> where that index is out of reach.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN MLOPS_TORCH_INDEX_URL="${TORCH_INDEX_URL}" MLOPS_WHEELHOUSE=/tmp/wheels PIP_NO_CACHE_DIR=1 \
    scripts/install_horovod.sh python \
 && rm -rf /tmp/wheels
