# Every target installs what it needs into a project-local .venv first (make install).
# The Python that .python-version pins: pyenv resolves it inside the repository (else python3).
PYTHON ?= $(shell pyenv which python3 2>/dev/null || echo python3)
PYTHON_VERSION := $(shell cat .python-version)
VENV ?= .venv
PY := $(VENV)/bin/python
NUM_PROC ?= 2
# pytest workers (pytest-xdist); a test file stays in one worker, so its module fixtures run once
TEST_WORKERS ?= 2
CONFIG ?= balanced
VALIDATE_SAMPLE ?= 200
export HF_DATASETS_TRUST_REMOTE_CODE := 1

.PHONY: install data test test-slow test-ray lint validate bench clean stage check-hub push

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml .python-version
	@$(PYTHON) -c 'import platform, sys; v = "$(PYTHON_VERSION)"; sys.exit(0 if platform.python_version() == v else \
		f"error: {sys.executable} is Python {platform.python_version()}; this project needs {v} (.python-version): pyenv install {v}")'
	@# a venv of another Python (an older checkout's) is made anew
	test -x $(PY) && $(PY) -c 'import platform, sys; sys.exit(platform.python_version() != "$(PYTHON_VERSION)")' || \
		{ rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

data: install  ## build the balanced config at its default size through the builder
	$(PY) -m generator build --config $(CONFIG) --num-proc $(NUM_PROC)

test: install  ## the fast test suite (under 5 minutes on 2 cores: about 4, in 2 workers)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: install  ## everything, including large builds and datasets-cli test
	$(PY) -m pytest -q -m "slow or not slow"

test-ray: install  ## the Ray runner's tests (a local Ray; needs the ray extra)
	$(PY) -m pip install --quiet -e ".[ray]"
	$(PY) -m pytest -q -m ray tests/test_distributed.py

# Configs: BENCH_CONFIGS (builder configs, one section and table each; default models,balanced).
# Sizes: BENCH_ROWS (train rows of each config's program set, which every method runs on and the (d)
# builds build: N, or CONFIG=N,...; default 300 for models, 1000 for balanced), BENCH_ROUNDS (ABBA
# rounds of num_proc=2/1 builds), BENCH_PROGRAMS (0: (a)(b)(c) on the whole set), BENCH_LARGE_ROWS
# (the memory build: 2000 rows of BENCH_LARGE_CONFIG, default models; 0 skips it). The defaults take
# about 45-50 minutes on 2 free cores (models about 24, balanced about 22), then bench-scaling.
bench: install  ## throughput per config (models, balanced), then scaling (bench-scaling); JSON in benchmarks/results/
	$(PY) benchmarks/bench_throughput.py
	$(MAKE) bench-scaling

# SCALING_CONFIGS (default balanced,models), SCALING_SIZES (total rows per build, default 300,2000,20000),
# SCALING_RAY_SIZES (Ray runner builds on a local two-node cluster, default balanced=20000; '' for none).
# About three hours on 2 free cores with the defaults (SCALING_SIZES=300,2000 SCALING_RAY_SIZES=balanced=2000: about 45 minutes).
.PHONY: bench-scaling
bench-scaling: install  ## share of the two-core bound (2x JAX's floor) at 300/2,000/20,000 rows, num_proc=2/1 and Ray; a million rows' cost
	$(PY) -m pip install --quiet -e ".[ray]"
	$(PY) benchmarks/bench_scaling.py

validate: install  ## build the balanced config (same cache as make data), then check every row; IREE on a sample
	$(PY) -m pip install --quiet -e ".[iree]"
	$(PY) -m generator validate --build --config $(CONFIG) --num-proc $(NUM_PROC) --iree --sample $(VALIDATE_SAMPLE)

lint: install
	$(VENV)/bin/ruff check generator tests examples jax_stablehlo_pairs.py
	$(VENV)/bin/ruff format --check generator tests examples jax_stablehlo_pairs.py

# Hub publishing. CONFIGS (default: all), TRAIN_SIZE, VALIDATION_SIZE, TEST_SIZE, SEED (default: the builder's),
# PLATFORMS (default: cpu; e.g. cpu,tpu stages <config>-tpu beside each config),
# STAGE_EXTRA (more stage options: --views ..., --max-tokens N, --with-optimized-hlo).
STAGED ?= staged
VIEWER_VENV ?= build/venv-viewer
STAGE_ARGS = $(if $(CONFIGS),--configs $(CONFIGS)) $(if $(TRAIN_SIZE),--train-size $(TRAIN_SIZE)) \
	$(if $(VALIDATION_SIZE),--validation-size $(VALIDATION_SIZE)) $(if $(TEST_SIZE),--test-size $(TEST_SIZE)) \
	$(if $(SEED),--seed $(SEED)) $(if $(PLATFORMS),--platforms $(PLATFORMS)) --num-proc $(NUM_PROC) \
	$(STAGE_EXTRA)
CHECK_SIZES ?= --train-size 40 --validation-size 10 --test-size 10

stage: install  ## build configs through the builder into $(STAGED)/: Parquet per config and split, card, plots
	$(PY) -m pip install --quiet -e ".[hub]"
	$(PY) -m generator stage --output-dir $(STAGED) $(STAGE_ARGS)

check-hub: install  ## stage small configs, load each with the newest datasets in its own venv (no project), compare rows
	$(PY) -m pip install --quiet -e ".[hub]"
	test -x $(VIEWER_VENV)/bin/python || $(PYTHON) -m venv $(VIEWER_VENV)
	$(VIEWER_VENV)/bin/python -m pip install --quiet --upgrade "datasets>=5"
	$(PY) -m generator stage --output-dir build/hub-check $(STAGE_ARGS) $(CHECK_SIZES) --check-with $(VIEWER_VENV)/bin/python

push: install  ## make push REPO=<user>/<name> [PRIVATE=1]: stage, check as the viewer loads it, upload, tag the version
	@test -n "$(REPO)" || { echo "error: give REPO=<user>/<name>" >&2; exit 2; }
	@$(PY) -c 'import sys; from huggingface_hub import get_token; sys.exit(0 if get_token() else \
		"error: no Hugging Face token: set HF_TOKEN or run `hf auth login` (needs write access)")'
	$(PY) -m pip install --quiet -e ".[hub]"
	test -x $(VIEWER_VENV)/bin/python || $(PYTHON) -m venv $(VIEWER_VENV)
	$(VIEWER_VENV)/bin/python -m pip install --quiet --upgrade "datasets>=5"
	$(PY) -m generator push --repo $(REPO) $(if $(PRIVATE),--private) --output-dir $(STAGED) $(STAGE_ARGS) \
		--check-with $(VIEWER_VENV)/bin/python

clean:
	rm -rf build dist *.egg-info .pytest_cache

.PHONY: test-ray-cluster
test-ray-cluster: install  ## the Ray runner on a local 3-node cluster (ray start): driver killed and rerun, a node lost
	$(PY) -m pip install --quiet -e ".[ray]"
	$(PY) -m pytest -q -s -m ray -k cluster tests/test_distributed.py
