# Two commands a user needs: `make demo` (the main job) and `make test` (lint + tests).
# Both create the virtual environment on first use; `constraints.txt` pins known-good versions
# so that a fresh machine installs from the local mirror in about a minute.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=

.PHONY: setup demo quick test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cfgen demo $(DEMO_ARGS)

quick: $(STAMP)
	$(BIN)/cfgen demo --quick $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check cfgen tests benchmarks examples
	$(BIN)/ruff format --check cfgen tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff check --fix cfgen tests benchmarks examples
	$(BIN)/ruff format cfgen tests benchmarks examples

test: lint
	WANDB_MODE=disabled $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
