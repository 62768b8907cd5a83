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

.PHONY: setup demo test notebook clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	mkdir -p data
	$(PY) -m tf_cartola.data.synthetic --rows $(DEMO_ROWS) --seed 0 --out data/cartola.csv
	$(PY) -m beam_jobs.preprocess --config configs/default.yaml
	$(PY) -m tf_cartola.train --config configs/default.yaml
	$(PY) -m serving.demo --config configs/default.yaml --csv data/cartola.csv

test: $(STAMP)
	$(PY) -m pytest -q

# Jupyter's front end is not needed by the tests (they run the notebook with nbclient).
notebook: $(STAMP)
	$(PY) -m pip install --quiet notebook==7.6.5
	$(PY) -m notebook notebooks/inspect_run.ipynb

clean:
	rm -rf runs data
