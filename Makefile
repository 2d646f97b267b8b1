# Every target installs what it needs into a project-local .venv first (make install).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NUM_PROC ?= 2
CONFIG ?= balanced
VALIDATE_SAMPLE ?= 200
export HF_DATASETS_TRUST_REMOTE_CODE := 1

.PHONY: install data test test-slow lint validate bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

data: install  ## build the balanced config at its default size through the builder
	$(PY) -m generator build --config $(CONFIG) --num-proc $(NUM_PROC)

test: install  ## the fast test suite (under 5 minutes on 2 cores)
	$(PY) -m pytest -q

test-slow: install  ## everything, including large builds and datasets-cli test
	$(PY) -m pytest -q -m "slow or not slow"

validate: install  ## build the balanced config (same cache as make data), then check every row; IREE on a sample
	$(PY) -m pip install --quiet -e ".[iree]"
	$(PY) -m generator validate --build --config $(CONFIG) --num-proc $(NUM_PROC) --iree --sample $(VALIDATE_SAMPLE)

lint: install
	$(VENV)/bin/ruff check generator tests jax_stablehlo_pairs.py
	$(VENV)/bin/ruff format --check generator tests jax_stablehlo_pairs.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
