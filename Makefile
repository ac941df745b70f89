# Quick start: `make repro` reproduces the pipeline on the embedded digits data; `make test`
# runs the tests. Both create .venv and install the project with the pinned constraints once.
# Orchestration: `make flow` (the pipeline as a Prefect flow), `make sweep SWEEP='-S k=[a,b]'`,
# `make serve` (scheduled sweep), `make ui` (MLflow), `make prefect-ui` (Prefect server + UI).
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(BIN):$(PATH)
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
# make sweep SWEEP="-S 'sparsify.solver=[cg,penalty]'"; by default params.yaml's sweep.overrides
SWEEP ?=
PORT ?=

.PHONY: install repro test test-slow bench figures flow sweep serve ui prefect-ui clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

repro: $(STAMP)
	dvc repro

# pytest's exit code 5 (no test collected) fails the target with its own message: a test set
# that runs nothing is a broken selection, never a pass.
NO_TESTS = { s=$$?; [ $$s -ne 5 ] || echo "$@: pytest collected no test (exit code 5)" >&2; exit $$s; }

test: $(STAMP)
	python -m pytest || $(NO_TESTS)

test-slow: $(STAMP)
	python -m pytest -m slow || $(NO_TESTS)

bench: $(STAMP)
	python bench/metric.py

figures: $(STAMP)
	dvc repro
	python -m pipelines.bench noop
	python -m pipelines.bench overhead
	python -m pipelines.bench logging

flow: $(STAMP)
	python -m pipelines repro

sweep: $(STAMP)
	python -m pipelines sweep $(SWEEP)

serve: $(STAMP)
	python -m pipelines serve

ui: $(STAMP)
	python -m pipelines ui $(if $(PORT),--port $(PORT))

prefect-ui: $(STAMP)
	python -m pipelines ui --prefect $(if $(PORT),--port $(PORT))

clean:
	rm -rf $(STAMP)
