# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
MLOPS_HOME ?= $(CURDIR)/.mlops
AIRFLOW_HOME ?= $(MLOPS_HOME)/airflow

export MLOPS_HOME AIRFLOW_HOME
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__PARALLELISM ?= 4
export GX_ANALYTICS_ENABLED := false
# the reference data set is 2013: its days are in the DAGs' window (include/config/schedule.yaml)
export MLOPS_START_DATE ?= 2013-01-01

.PHONY: help setup dvc-setup repro report reproduce demo test up replay up-prod down-prod celery-check serve bench mutation audit-verify clean env constraints cluster-up cluster-down cluster-deps cluster-test

help:
	@echo "make setup  create .venv with the pinned requirements (constraints-3.11.txt) and Horovod (built once per"
	@echo "            machine), migrate Airflow"
	@echo "make constraints  regenerate constraints-3.11.txt: a fresh resolve of requirements*.txt and torch for"
	@echo "            Python 3.11 in a temporary venv, frozen (a few minutes)"
	@echo "make demo   set up, then the whole lifecycle on January to June 2013, day by day, with a timeline"
	@echo "            (DEMO_ARGS=--fast: six weeks)"
	@echo "make test   set up, then run every test (unit, DAG integrity, end-to-end, S3, Slack, deployment, browser)"
	@echo "            (PYTEST_ARGS=tests/unit: some of them)"
	@echo "make repro  the model's DVC pipeline (dvc.yaml: snapshot, train, evaluate), what changed only"
	@echo "make report report.md for a pull request: this branch's model against REPORT_BASE's (main), with"
	@echo "            the gate's checks, the metrics and params diff and plots; non-zero when the gate fails"
	@echo "make reproduce VERSION=n  a registered version trained again from its DVC snapshot (never the lake),"
	@echo "            its fingerprint checked, compared with the registered model"
	@echo "make dvc-setup  create .venv-dvc (DVC, pinned in constraints-dvc.txt; make test and report make it)"
	@echo "make up     serve the Airflow UI with these DAGs at http://localhost:8080 (airflow standalone, 127.0.0.1)"
	@echo "make replay the same UI, with the scheduler replaying 2013 day by day on its own (REPLAY_START, REPLAY_END;"
	@echo "            state in MLOPS_HOME/replay): upstream drops, traffic to the prediction service, the lifecycle"
	@echo "make up-prod    scheduler, dag-processor, triggerer, api-server as separate processes on PostgreSQL,"
	@echo "            and the prediction service (bearer token in MLOPS_HOME/secrets/serve_token)"
	@echo "make down-prod  stop them"
	@echo "make celery-check  the same launcher with the CeleryExecutor (Redis at MLOPS_TEST_REDIS, default"
	@echo "            redis://127.0.0.1:6379/0; one local worker): one ingestion run through the worker (2-3 min)"
	@echo "make cluster-up  test hosts on this machine (network namespaces, root): control (Redis, SeaweedFS S3,"
	@echo "            MLflow server, Airflow with the CeleryExecutor), worker1 and worker2 (a Celery worker each), serve"
	@echo "make cluster-down  stop the test hosts' servers and remove every namespace, hosts file and database"
	@echo "make cluster-test  the faults across the test hosts (object store and tracking server stopped, a worker's"
	@echo "            link cut during Horovod; about 7 min): bench/results/cluster-faults.json"
	@echo "make cluster-deps  install Debian's openssh-server (root; the machine's own sshd is not started): the worker"
	@echo "            hosts' SSH servers, through which Horovod starts ranks (make test and cluster-up run it)"
	@echo "make serve  serve the prediction API at http://localhost:8000 (MLOPS_SERVE_PORT) from the registry"
	@echo "make bench  run the ingestion benchmark (bench/README.md)"
	@echo "make mutation   mutation score of the decision logic against the unit tests (mutmut; about an hour"
	@echo "            on 2 cores): bench/results/mutation.txt, bench/README.md"
	@echo "make audit-verify  check the audit trail of the model's decisions (hash chain, head kept in the registry)"
	@echo "make env    print the settings above as export lines, for running airflow without make:"
	@echo "            eval \"\$$(make -s env)\""
	@echo "make clean  remove MLOPS_HOME (the lake, the registry, Airflow's database and logs); .venv stays"
	@echo "state lives under MLOPS_HOME=$(MLOPS_HOME)"

# the settings exported above, as shell (docs/running.md, "Running the DAGs without the Makefile")
env:
	@echo "export PATH=\"$(BIN):\$$PATH\" PYTHONPATH='$(PYTHONPATH)' MLOPS_HOME='$(MLOPS_HOME)' AIRFLOW_HOME='$(AIRFLOW_HOME)'"
	@echo "export AIRFLOW__CORE__DAGS_FOLDER='$(AIRFLOW__CORE__DAGS_FOLDER)' AIRFLOW__CORE__PLUGINS_FOLDER='$(AIRFLOW__CORE__PLUGINS_FOLDER)'"
	@echo "export AIRFLOW__CORE__LOAD_EXAMPLES=$(AIRFLOW__CORE__LOAD_EXAMPLES) AIRFLOW__CORE__PARALLELISM=$(AIRFLOW__CORE__PARALLELISM) GX_ANALYTICS_ENABLED=$(GX_ANALYTICS_ENABLED) MLOPS_START_DATE=$(MLOPS_START_DATE)"

# every version comes from constraints-3.11.txt (`make constraints` writes it), torch and Horovod's build tools too:
# install_horovod.sh's pip runs under PIP_CONSTRAINT (Horovod itself is built without build isolation, so the
# constraints do not reach into a build environment)
$(BIN)/.installed: requirements.txt requirements-dev.txt constraints-3.11.txt scripts/install_horovod.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints-3.11.txt
	PIP_CONSTRAINT=$(CURDIR)/constraints-3.11.txt scripts/install_horovod.sh $(BIN)/python
	@touch $@

constraints:
	nice -n 10 scripts/constraints.sh

$(AIRFLOW_HOME)/.migrated: $(BIN)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	@scripts/private.sh $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/db-migrate.log; exit 1)
	$(BIN)/airflow pools set horovod 1 "Concurrent Horovod training jobs" >> $(AIRFLOW_HOME)/db-migrate.log 2>&1
	$(BIN)/airflow pools set tuning 2 "Concurrent tuning trials (one process each)" >> $(AIRFLOW_HOME)/db-migrate.log 2>&1
	@scripts/private.sh $(AIRFLOW_HOME)/airflow.db $(MLOPS_HOME)/secrets
	@touch $@

setup: $(BIN)/.installed $(AIRFLOW_HOME)/.migrated

# DVC in its own venv (requirements-dvc.txt says why); the pipeline's stages (dvc.yaml) run .venv's Python
DVC_VENV := $(CURDIR)/.venv-dvc
DVC := $(DVC_VENV)/bin/dvc
export DVC_NO_ANALYTICS := 1
$(DVC_VENV)/.installed: requirements-dvc.txt constraints-dvc.txt
	@test -x $(DVC_VENV)/bin/python || $(PYTHON) -m venv $(DVC_VENV)
	$(DVC_VENV)/bin/python -m pip install --quiet --upgrade "pip>=25"
	$(DVC_VENV)/bin/python -m pip install --quiet -r requirements-dvc.txt -c constraints-dvc.txt
	@touch $@

dvc-setup: $(DVC_VENV)/.installed

# the model's pipeline on the snapshot (dvc.yaml): what changed since the last run, nothing else
repro: $(BIN)/.installed $(DVC_VENV)/.installed
	$(DVC) repro

# a registered version trained again from its own training set (its DVC snapshot), compared with the registered one
reproduce: $(BIN)/.installed $(DVC_VENV)/.installed
	@test -n "$(VERSION)" || { echo "make reproduce VERSION=n: which registered version to rebuild" >&2; exit 2; }
	$(BIN)/python -m include.mlops.repro reproduce --version "$(VERSION)" --dvc $(DVC)

# report.md for a pull request: this branch's model against REPORT_BASE's (scripts/report.sh)
REPORT_BASE ?= main
report: $(BIN)/.installed $(DVC_VENV)/.installed
	DVC=$(DVC) PYTHON=$(BIN)/python REPORT_BASE=$(REPORT_BASE) scripts/report.sh

demo: setup
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# Every test, in two runs: the tests that each run in one process, spread over TEST_WORKERS processes (pytest-xdist,
# test by test, an idle process taking tests from a busy one: on 2 cores 425 s, against 453 s handing them out in
# fixed shares and 506 s keeping a module's tests together); then the deployment tests (tests/deploy: each starts a
# whole Airflow deployment, whose scheduler and workers want the machine's cores) and the cluster's (tests/cluster:
# network namespaces and servers of their own), one at a time. Both run even when the first fails; the status is the
# first failure's. PYTEST_ARGS runs those tests alone, in one process.
TEST_WORKERS ?= 2
test: $(BIN)/.installed $(DVC_VENV)/.installed
ifeq ($(strip $(PYTEST_ARGS)),)
	@status=0; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --ignore=tests/deploy --ignore=tests/cluster || status=$$?; \
	scripts/cluster/install_sshd.sh && $(BIN)/python -m pytest tests/deploy tests/cluster || { [ $$status -ne 0 ] || status=$$?; }; \
	exit $$status
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

up: setup
	PATH=$(BIN):$$PATH scripts/up.sh

# the closed loop under the scheduler: simulate_upstream on the daily schedule of the window (with catch-up), the
# prediction service beside Airflow, the DAGs unpaused; its own MLOPS_HOME, so that `make up` is left as it was
REPLAY_START ?= 2013-01-01
REPLAY_END ?= 2013-03-31
REPLAY_HOME ?= $(MLOPS_HOME)/replay
REPLAY_POKE_S ?= 5          # the drop sensors look this often (a live source: 60)
REPLAY_DEPLOY_POKE_S ?= 60  # a canary looks for evidence this often (a live source: 600)

replay: $(BIN)/.installed
	$(MAKE) up MLOPS_HOME=$(REPLAY_HOME) AIRFLOW_HOME=$(REPLAY_HOME)/airflow MLOPS_START_DATE=$(REPLAY_START) \
	  MLOPS_END_DATE=$(REPLAY_END) MLOPS_CATCHUP=true MLOPS_REPLAY=true AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
	  MLOPS_SENSOR_POKE_S=$(REPLAY_POKE_S) MLOPS_DEPLOY_POKE_S=$(REPLAY_DEPLOY_POKE_S)

# production-shaped: separate processes, LocalExecutor, PostgreSQL (docs/deploying.md)
PROD_AIRFLOW_HOME ?= $(MLOPS_HOME)/airflow-prod

up-prod: $(BIN)/.installed
	AIRFLOW_HOME=$(PROD_AIRFLOW_HOME) PYTHON=$(BIN)/python scripts/prod/up-local.sh $(PROD_ARGS)

down-prod:
	AIRFLOW_HOME=$(PROD_AIRFLOW_HOME) $(BIN)/python scripts/prod/airflow_prod.py stop

# the production launcher with the CeleryExecutor, one real DAG run through its Celery worker (opt-in: a deployment of
# its own takes longer than `make test` may spend); the launcher's Celery checks are unit tests in `make test`
celery-check: $(BIN)/.installed
	MLOPS_TEST_CELERY=1 $(BIN)/python -m pytest tests/deploy/test_celery_executor.py -p no:cacheprovider $(PYTEST_ARGS)

# the service needs the registry, not Airflow: no migration into whatever MLOPS_HOME it is pointed at
serve: $(BIN)/.installed
	$(BIN)/python -m include.mlops.serve.app

bench: setup
	$(BIN)/python bench/bench_ingest.py $(BENCH_ARGS)

# mutation testing of the decision logic (gate, canary comparison, drift, firing rule, quarantine and validation
# report, routing and the model store, the registry's reading of MLflow's errors, the service's health, the dates
# monitoring's adapter reports on and judges) against the unit tests that cover it; configuration in pyproject.toml,
# scope in bench/mutation_report.py (MUTANTS=<globs>: only those, e.g. MUTANTS='include.mlops.core.registry.*').
# A fresh measure each time: mutants/ is rebuilt.
MUTATION_JOBS ?= 2
MUTATION_TIMEOUT ?= 3h

mutation: $(BIN)/.installed
	@mkdir -p bench/results
	rm -rf mutants
	@set -f; start=$$(date +%s); \
	  OMP_NUM_THREADS=1 timeout $(MUTATION_TIMEOUT) $(BIN)/mutmut run --max-children $(MUTATION_JOBS) \
	    $(if $(MUTANTS),$(MUTANTS),$$($(BIN)/python bench/mutation_report.py --scope)) > bench/results/mutmut.log 2>&1; \
	  rc=$$?; echo "mutmut run: exit $$rc in $$(( $$(date +%s) - start )) s (log: bench/results/mutmut.log)"; \
	  $(BIN)/python bench/mutation_report.py $(MUTANTS)

# test hosts on this machine (network namespaces on a bridge) with the cluster's own servers: Redis, SeaweedFS's S3
# API, an MLflow tracking server, a relay to the machine's PostgreSQL; Airflow on control with the CeleryExecutor and
# a Celery worker on each worker host (scripts/cluster/cluster.py; root needed)
cluster-up: $(BIN)/.installed cluster-deps
	$(BIN)/python scripts/cluster/cluster.py up

cluster-deps:
	scripts/cluster/install_sshd.sh

# the rarer faults across the test hosts, on a cluster of their own (tests/cluster/test_cluster_faults.py)
cluster-test: $(BIN)/.installed cluster-deps
	MLOPS_TEST_CLUSTER_FAULTS=1 MLOPS_TEST_CLUSTER_FAULTS_OUT=$(CURDIR)/bench/results/cluster-faults.json \
	  $(BIN)/python -m pytest tests/cluster/test_cluster_faults.py -p no:cacheprovider $(PYTEST_ARGS)

cluster-down: $(BIN)/.installed
	$(BIN)/python scripts/cluster/cluster.py down

audit-verify: $(BIN)/.installed
	$(BIN)/python -m include.mlops.core.audit verify

clean:
	rm -rf $(MLOPS_HOME)
