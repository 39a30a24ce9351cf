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
	@# Lightning (optional, for emabench.integrations.lightning's tests) only where it keeps this torch; else they skip
	@if out=$$($(BIN)/python -m pip install --dry-run -e ".[lightning]" 2>/dev/null) && ! echo "$$out" | grep -q " torch-[0-9]"; then $(BIN)/python -m pip install -q -e ".[lightning]"; else echo "Lightning not installed (it would replace $(TORCH), or pip cannot reach it): its tests skip"; fi
	touch $(STAMP)

# The tracking extras (--track mlflow|tensorboard), for their tests: pip resolves them once (a dry run); they are
# installed as resolved only if that leaves torch as it is (a dependency asking for another torch would pull a
# multi-GB build), otherwise their tests skip. Done once per pyproject change.
define EXTRAS_PLAN
import json, sys
wanted = [p["metadata"] for p in json.load(open(sys.argv[1]))["install"]]
if any(m["name"].lower() == "torch" for m in wanted):
    sys.exit(1)
print("\n".join(f"{m['name']}=={m['version']}" for m in wanted if m["name"].lower() != "emabench"))
endef
export EXTRAS_PLAN

$(EXTRAS): $(STAMP)
	@if $(BIN)/python -m pip install -q --dry-run --report $(VENV)/extras.json -e ".[mlflow,tensorboard]" 2>/dev/null \
	    && $(BIN)/python -c "$$EXTRAS_PLAN" $(VENV)/extras.json > $(VENV)/extras.txt; then \
	  $(BIN)/python -m pip install -q --no-deps -r $(VENV)/extras.txt && echo installed > $@; \
	else \
	  echo "make: the mlflow/tensorboard extras would replace $(TORCH) (or pip could not resolve them): not installed, their tests skip"; \
	  echo skipped > $@; \
	fi

venv: $(STAMP)  ## Create .venv and install emabench with its dev tools

run: $(STAMP)  ## Train the seed-001 study once: emabench run configs/regression.yaml
	$(BIN)/emabench run configs/regression.yaml

# Tests run in one worker process per core (pytest-xdist); PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= auto

test: $(EXTRAS)  ## Run the default test suite (CPU, a few minutes; installs the tracking extras if torch stays)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS)

test-slow: $(EXTRAS)  ## Run every test, slow ones included
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "slow or not slow"

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
