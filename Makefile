# The README's two commands: `make demo` (the whole system on loopback) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STATE ?= state
# `make run`'s CA listens here; RUN_FLAGS adds server flags (ports: --demo-dns,
# --demo-dns-api, --http01-port, --tlsalpn01-port, --crl-listen).
RUN_LISTEN ?= 127.0.0.1:14000
RUN_FLAGS ?=
# and its two CT logs here.
RUN_CT_PORT ?= 6962
RUN_CT_PORT2 ?= 6963

.PHONY: setup run demo test test-fast lint typecheck fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

setup: $(STAMP)

# The CA logs every certificate in two local CT logs (scripts/with-ct-logs.sh).
run: $(STAMP)
	ACMEKIT=$(CURDIR)/$(BIN)/acmekit CT_PORT=$(RUN_CT_PORT) CT_PORT2=$(RUN_CT_PORT2) \
		$(CURDIR)/scripts/with-ct-logs.sh $(STATE) \
		$(BIN)/acmekit server --demo --listen $(RUN_LISTEN) --state-dir $(STATE) $(RUN_FLAGS)

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

# Test files run in TEST_WORKERS processes (pytest-xdist, a file to a worker: module
# fixtures are built once); most of a test's time is spent waiting on servers and peers.
TEST_WORKERS ?= 3
test: $(STAMP) lint typecheck
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

# Unit and component tests that need no server: no PostgreSQL, no third-party peers.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not postgres and not interop" tests/unit tests/component

bench: $(STAMP)
	$(BIN)/python bench/server.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
