# `make demo` runs the embedded demo DAG, `make test` the whole test suite (what CI runs).
# Both create .venv from the pinned lock file when it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.animbench-installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test test-fast lint bench gpu-check clean-results

$(STAMP): requirements.lock pyproject.toml workflow/scripts/install_evaluators.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	bash workflow/scripts/install_evaluators.sh $(BIN)/python
	touch $(STAMP)

demo: $(STAMP)
	snakemake --cores all reports/table1.html

test: $(STAMP)
	pytest

test-fast: $(STAMP)
	pytest -m "not slow"

lint: $(STAMP)
	ruff check .
	snakemake --lint

bench: $(STAMP)
	python tests/benchmarks/bench_loader.py

# On one CUDA GPU, in under 8 minutes: every CUDA path (AMP, NCCL, SyncBatchNorm, resume,
# throughput); table printed and written to gpu-check/summary.json. Uses the machine's own
# torch when it has one (no $(STAMP): a GPU image's CUDA torch must not be replaced).
# GPU_CHECK_FLAGS=--dry runs every step on CPU (as CI does).
gpu-check:
	bash tests/gpu/check.sh gpu-check $(GPU_CHECK_FLAGS)

clean-results:
	rm -rf resources/datasets results logs benchmarks reports/table1.html gpu-check
