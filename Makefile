# The two commands a newcomer types: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
# Use the active virtual environment if there is one, else our own .venv (created on first use).
BIN := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV)/bin,$(VENV)/bin)
STAMP := $(BIN)/.tracelake-installed
DEMO_FILE := build/demo-traces.pb

.PHONY: install lint format test run bench clean

$(STAMP): pyproject.toml setup.py $(wildcard src/tracelake/codec/*.c)
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

# Until the server lands, `make run` shows the storage engine end to end on the local backend
# (./data): generate realistic traces, import them as blocks, list the blocks, print one trace.
run: install
	@mkdir -p build
	$(BIN)/tracelake generate $(DEMO_FILE) --traces 2000
	$(BIN)/tracelake import $(DEMO_FILE)
	$(BIN)/tracelake blocks
	@id=$$($(BIN)/tracelake blocks --json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)[-1]["minID"])'); \
	  echo "tracelake trace $$id"; $(BIN)/tracelake trace $$id --pretty | head -n 40; echo "..."

bench: install
	$(BIN)/python benchmarks/storage_bench.py

clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis
