# The README's commands. Each one creates .venv and installs what it needs on first use.
# `make` alone lists them (from the `## target:` lines below).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export FLASK_APP := wsgi.py

.PHONY: help run serve test test-postgres fuzz bench docker-check lint format clean
.DEFAULT_GOAL := help

## help: list these targets
help:
	@echo "DMarket API. Usage: make TARGET (first use creates .venv and installs what the target needs)"
	@awk '/^## [a-z-]+: /{i = index($$0, ": "); printf "  make %-14s %s\n", substr($$0, 4, i - 4), substr($$0, i + 2)}' \
		$(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

## run: serve the API on http://localhost:5000 for development (HOST=, PORT= to change; SQLite, local sign-in)
HOST ?= 127.0.0.1
PORT ?= 5000
run: $(VENV)/.runtime
	@$(BIN)/python -c "import socket, sys; s = socket.socket(); s.bind(('$(HOST)', $(PORT)))" 2>/dev/null || \
		{ echo "make run: port $(PORT) on $(HOST) is taken (another server?). Choose another: PORT=5001 make run" >&2; \
		exit 1; }
	HOST=$(HOST) PORT=$(PORT) $(BIN)/flask db upgrade
	HOST=$(HOST) PORT=$(PORT) $(BIN)/flask run --host $(HOST) --port $(PORT)

## serve: production-style serving with gunicorn (gunicorn.conf.py: PORT, WEB_CONCURRENCY, ...)
serve: $(VENV)/.runtime
	$(BIN)/flask db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## test: the whole test suite (SQLite; tests needing Redis, PostgreSQL or Chromium skip if they are missing)
test: $(VENV)/.dev
	$(BIN)/pytest $(PYTEST_ARGS)

## test-postgres: the whole suite again on PostgreSQL (each test in a schema of its own)
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
test-postgres: $(VENV)/.dev
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest $(PYTEST_ARGS)

## fuzz: contract fuzzing with many more examples than CI's 100 per operation (nightly-style)
FUZZ_EXAMPLES ?= 2000
fuzz: $(VENV)/.dev
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider tests/test_contract.py

## bench: throughput and latency against the framework's ceiling (bench/README.md); wrk from Debian when possible
# PostgreSQL too when a server answers on the default port (BENCH_DATABASE_URL= for SQLite only).
BENCH_DATABASE_URL ?= $(shell $(PYTHON) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" \
	2>/dev/null && echo postgresql://postgres@127.0.0.1:5432/test)
export BENCH_DATABASE_URL
bench: $(VENV)/.dev
	@command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q wrk >/dev/null 2>&1; }; } || \
		echo "wrk could not be installed: the Python load generator will be used"
	$(BIN)/python -m bench

## docker-check: build and run the image and compose.yaml under a real Docker engine (root; tools/docker-check/README.md)
docker-check:
	bash tools/docker-check/run.sh .

## lint: ruff lint and format check
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## format: fix what ruff can fix, and format the code
format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## clean: remove .venv and the tools' caches
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage
