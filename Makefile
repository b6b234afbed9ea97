# The two commands a newcomer types: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
# Use the active virtual environment if there is one, else our own .venv (created on first use).
BIN := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV)/bin,$(VENV)/bin)
STAMP := $(BIN)/.tracelake-installed
DEMO_FILE := build/demo-traces.pb

.PHONY: install lint format test run demo bench clean

$(STAMP): pyproject.toml setup.py $(wildcard src/tracelake/codec/*.c src/tracelake/encoding/v1/*.c)
	@if [ -z "$$VIRTUAL_ENV" ] && [ ! -x $(VENV)/bin/python ]; then $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest

# `make run`: the whole system in one process on the embedded default (local directory ./data, WAL in
# ./wal): OTLP on 4317/4318, Zipkin on 9411, Jaeger on 14250/14268/6831/6832, the API on 3200.
run: install
	$(BIN)/tracelake serve

# `make demo`: the storage engine on its own: generate realistic traces, import them into a fresh
# store (build/demo-data), list the blocks, print one trace.
DEMO_ENV := TRACELAKE_STORAGE__TRACE__LOCAL__PATH=build/demo-data
demo: install
	@rm -rf build/demo-data && mkdir -p build
	$(BIN)/tracelake generate $(DEMO_FILE) --traces 2000
	$(DEMO_ENV) $(BIN)/tracelake import $(DEMO_FILE)
	$(DEMO_ENV) $(BIN)/tracelake blocks
	@id=$$($(DEMO_ENV) $(BIN)/tracelake blocks --json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)[0]["minID"])'); \
	  echo "tracelake trace $$id"; $(DEMO_ENV) $(BIN)/tracelake trace $$id --pretty | head -n 40; echo "..."

bench: install
	$(BIN)/python benchmarks/storage_bench.py
	$(BIN)/python benchmarks/ingest_bench.py

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
