# Two commands do all the set-up: `make run` and `make test`.
SHELL := /bin/bash
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

# GPU tests are deselected here rather than skipped: they run on a GPU machine.
.PHONY: install run test test-gpu gpu-check test-fast lint format bench reliability lock clean

# Installs into .venv with the pinned constraints; reinstalls when they change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# The demo sets its own budget: the plan (applied to every unset setting) aims at the best model for
# the data (50 optimizer steps per train case: about an hour on 2 CPU cores for this set). Two of
# its epochs of 100 steps (the planner's floor) are about the 220 steps per worker the demo trained before.
run: install  ## end-to-end pipeline on embedded defaults, a 2-epoch demo (DVC -> Ray Train -> MLflow)
	$(VENV)/bin/unetflow run --set train.epochs=2

test: install  ## the whole suite, service-backed tests included (GPU tests: make test-gpu)
	$(VENV)/bin/pytest -m "not gpu"

test-gpu: install  ## CUDA paths (AMP, resume, channels_last, inference, NCCL); GPU machine
	$(VENV)/bin/pytest -m gpu

# One script for a GPU session: the CUDA tests, then the GPU benchmark, whose table
# (MFU per preset, with/without channels_last and compile) lands in bench/results/.
gpu-check: install  ## make test-gpu + bench/bench_models.py --device cuda
	$(VENV)/bin/pytest -m gpu -q 2>&1 | tee bench/results/test_gpu.log; \
	  status=$${PIPESTATUS[0]}; \
	  $(PY) bench/bench_models.py --device cuda || exit 1; \
	  exit $$status

test-fast: install  ## unit tests only
	$(VENV)/bin/pytest -m "not slow and not integration and not gpu"

lint: install  ## ruff check + format check + mypy (checks what [tool.mypy] names: unet_core)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install  ## benchmarks print tables and write bench/results/
	$(PY) bench/bench_models.py --quick
	$(PY) bench/bench_augment.py --quick
	$(PY) bench/bench_ray_train.py --quick
	$(PY) bench/bench_inference.py --quick
	$(PY) bench/bench_data.py --quick
	$(PY) bench/bench_overhead.py
	$(PY) bench/bench_tune.py --quick
	$(PY) bench/bench_quality.py --quick --out bench/results/quality_cpu_quick.md

reliability: install  ## inject every fault for real, then write bench/reliability.md
	$(PY) bench/reliability.py

lock: install  ## re-pin constraints.txt from the current environment
	$(PY) -m pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/' \
	  | cat <(printf '# Pinned versions (pip install -c constraints.txt). Regenerate: make lock.\n') - > constraints.txt

clean:
	rm -rf .unetflow data/prepared
