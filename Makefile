# emabench — `make run` and `make test` each set everything up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, pinned to the CPU wheel this machine ships: a bare `torch` would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

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

venv: $(STAMP)  ## Create .venv and install emabench with its dev tools

run: $(STAMP)  ## Train the seed-001 study once: emabench run configs/regression.yaml
	$(BIN)/emabench run configs/regression.yaml

test: $(STAMP)  ## Run the default test suite (CPU, a few minutes)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)  ## Run every test, slow ones included
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
