# emabench — `make run` and `make test` each set everything up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, pinned to the CPU wheel this machine ships: a bare `torch` would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
EXTRAS := $(VENV)/.extras

.DEFAULT_GOAL := help
.PHONY: help venv run test test-slow lint format bench clean

help:  ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The tracking extras (--track mlflow|tensorboard), for their tests: installed only if pip's dry run says they leave
# torch as it is (a dependency asking for another torch would pull a multi-GB build); otherwise their tests skip.
$(EXTRAS): $(STAMP)
	@if $(BIN)/python -m pip install -q --dry-run --report - -e ".[mlflow,tensorboard]" 2>/dev/null \
	    | $(BIN)/python -c "import json, sys; sys.exit(any(p['metadata']['name'].lower() == 'torch' \
	      for p in json.load(sys.stdin)['install']))"; then \
	  $(BIN)/python -m pip install -q -e ".[mlflow,tensorboard]" && echo installed > $@; \
	else \
	  echo "make: the mlflow/tensorboard extras would replace $(TORCH) (or pip could not resolve them): not installed, their tests skip"; \
	  echo skipped > $@; \
	fi

venv: $(STAMP)  ## Create .venv and install emabench with its dev tools

run: $(STAMP)  ## Train the seed-001 study once: emabench run configs/regression.yaml
	$(BIN)/emabench run configs/regression.yaml

test: $(EXTRAS)  ## Run the default test suite (CPU, a few minutes; installs the tracking extras if torch stays)
	$(BIN)/python -m pytest -q

test-slow: $(EXTRAS)  ## Run every test, slow ones included
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: $(STAMP)  ## ruff check + format check
	$(BIN)/ruff check emabench tests
	$(BIN)/ruff format --check emabench tests

format: $(STAMP)  ## Format the code with ruff
	$(BIN)/ruff format emabench tests
	$(BIN)/ruff check --fix emabench tests

bench: $(STAMP)  ## Run the shipped benchmarks (emabench bench)
	$(BIN)/emabench bench

clean:  ## Remove the virtualenv and caches (keeps runs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
