# The README's two commands: `make demo` (the whole system on loopback) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STATE ?= state

.PHONY: setup run demo test test-fast lint typecheck fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/acmekit server --listen 127.0.0.1:14000 --state-dir $(STATE)

demo: $(STAMP)
	ACMEKIT=$(CURDIR)/$(BIN)/acmekit scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check src testkit tests bench scripts
	$(BIN)/ruff format --check src testkit tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src testkit tests bench
	$(BIN)/ruff check --fix src testkit tests bench

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

# Unit and component tests that need no server: no PostgreSQL, no third-party peers.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not postgres and not interop" tests/unit tests/component

bench: $(STAMP)
	$(BIN)/python bench/server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
