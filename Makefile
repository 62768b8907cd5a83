# `make demo` and `make test` each set up .venv/ when it is missing or stale, then run.
# demo: synthetic data -> preprocess (Beam, DirectRunner) -> train, evaluate, bless, push
#       -> local TF-Serving-compatible server, a few rows scored over REST and gRPC.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# tf.Transform's Keras layer is Keras 2: every process must choose tf_keras before importing TF.
# TensorFlow's C++ logs are off (CUDA plugin registration errors on CPU-only machines); -v brings them back.
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONWARNINGS := ignore::FutureWarning,ignore::DeprecationWarning

DEMO_ROWS ?= 128000
# The demo's data is of no month: the run id (tf_cartola.contract.months) is this one.
DEMO_MONTH ?= $(shell date -u +%Y-%m)

.PHONY: setup system-packages worker-env tfma-env s3-env airflow demo demo-db lint test test-e2e test-production test-airflow notebook clean

setup: $(STAMP)

# What the tests drive from Debian: headless Chromium and its driver (the offline report test) and
# PostgreSQL's server binaries (a throwaway server per test session and for demo-db).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null \
	    || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing Debian packages: chromium chromium-driver postgresql"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    chromium chromium-driver postgresql >/dev/null; \
	fi

$(STAMP): requirements.txt requirements-dev.txt constraints.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# A Beam worker's environment, as a distributed runner's workers get it: the package's wheel installed
# with the dependencies its install_requires resolves (pinned by constraints.txt), no dev requirements,
# no checkout on sys.path. The dependencies are kept between runs; the package is reinstalled each time.
WORKER_VENV := .venv-worker
WORKER_WHEELS := build/worker-wheel
worker-env: $(STAMP)
	test -x $(WORKER_VENV)/bin/python || $(PYTHON) -m venv $(WORKER_VENV)
	$(WORKER_VENV)/bin/python -m pip install --quiet --upgrade pip
	rm -rf $(WORKER_WHEELS)
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(WORKER_WHEELS) .
	$(WORKER_VENV)/bin/python -m pip uninstall --quiet --yes tf_cartola 2>/dev/null || true
	cd / && $(CURDIR)/$(WORKER_VENV)/bin/python -m pip install --quiet -c $(CURDIR)/constraints.txt \
	  $(CURDIR)/$(WORKER_WHEELS)/tf_cartola-*.whl
	$(WORKER_VENV)/bin/python -m pip check

# bench/evaluate.py's peer, TensorFlow Model Analysis, in an environment of its own (never a
# dependency of the project): requirements-tfma.txt against the same pins.
TFMA_VENV := .venv-tfma
tfma-env: $(TFMA_VENV)/.installed
$(TFMA_VENV)/.installed: requirements-tfma.txt requirements.txt constraints.txt
	test -x $(TFMA_VENV)/bin/python || $(PYTHON) -m venv $(TFMA_VENV)
	$(TFMA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TFMA_VENV)/bin/python -m pip install --quiet -r requirements-tfma.txt -c constraints.txt
	touch $@

demo: $(STAMP)
	mkdir -p data
	$(PY) -m tf_cartola.synthetic --rows $(DEMO_ROWS) --seed 0 --out data/cartola.csv
	$(PY) -m beam_jobs.preprocess --config configs/default.yaml
	$(PY) -m tf_cartola.train --config configs/default.yaml --run_id $(DEMO_MONTH)
	$(PY) -m serving.demo --config configs/default.yaml --csv data/cartola.csv

# PostgreSQL at both ends: a throwaway server, users loaded with COPY, preprocess from the table,
# train and push, scores upserted into a table.
demo-db: $(STAMP) system-packages
	$(PY) -m serving.demo_db --config configs/default.yaml

# The code standard (pyproject.toml): ruff's lint rules and its formatter, before any test runs in CI.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The default suite on two workers (pytest-xdist): every test is independent (own folders, free ports);
# the 15 slowest are listed, to keep it under 5 minutes.
test: $(STAMP) system-packages
	$(PY) -m pytest -q -n 2 --durations=15

# The production path end to end: the Beam jobs on a worker pool whose environment is the package alone,
# models on an object store, a month of data after the first (CI runs it after `make test`).
test-production: worker-env system-packages
	$(PY) -m pytest -q -m production

# End-to-end duplicates of what `make test` checks piece by piece: the README blocks run as written, the
# notebooks, the report in headless Chromium, the sdist in a fresh venv, the portable and multi-process
# runners against the direct one, a table against the CSV run, 64 clients across a version swap (CI
# runs it after `make test`).
test-e2e: $(STAMP) system-packages
	$(PY) -m pytest -q -m e2e

# Airflow in an environment of its own (its pins: requirements-airflow.txt), SQLite as its database, its home
# in .airflow/ (git ignores both; the database is created or migrated on every `make airflow`). The DAG's tasks run the project's CLIs with .venv's interpreter.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
airflow: $(AIRFLOW_STAMP) $(STAMP)
	$(AIRFLOW_VENV)/bin/airflow db migrate >/dev/null
	@echo "Airflow is ready (home $(AIRFLOW_HOME), SQLite): dags/airflow.sh runs its commands (README, 'The monthly retrain in Airflow')"

$(AIRFLOW_STAMP): requirements-airflow.txt
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r requirements-airflow.txt
	touch $@

# An S3 server for the object-store tests (moto's server mode, its pins: requirements-s3.txt) in an
# environment of its own; the tests start it on loopback.
S3_VENV := .venv-s3
s3-env: $(S3_VENV)/.installed
$(S3_VENV)/.installed: requirements-s3.txt
	test -x $(S3_VENV)/bin/python || $(PYTHON) -m venv $(S3_VENV)
	$(S3_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(S3_VENV)/bin/python -m pip install --quiet -r requirements-s3.txt
	touch $@

# The DAG run for real by `airflow dags test`, from .venv's pytest: months on local folders (a shifted
# one, a killed task, people steering), and two on an S3 bucket with the jobs on a worker pool.
test-airflow: airflow worker-env s3-env
	$(PY) -m pytest -q -m airflow

# Jupyter's front end is not needed by the tests (they run the notebook with nbclient).
notebook: $(STAMP)
	$(PY) -m pip install --quiet notebook==7.6.5
	$(PY) -m notebook notebooks/inspect_run.ipynb

clean:
	rm -rf runs data
