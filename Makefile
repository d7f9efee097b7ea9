# The two commands of the README's quick start, and what they build on.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: serve test lint bench install deps fuzz

$(BIN)/feedsvc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/feedsvc

HOST ?= 127.0.0.1
PORT ?= 8000
serve: install          ## install, then serve the shipped sample site on http://$(HOST):$(PORT)/ (make serve PORT=8001)
	$(BIN)/feedsvc serve --config config.yaml --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check feedsvc tests bench
	$(BIN)/mypy

deps:                   ## chromium, Redis and feedcheck for the tests (scripts/test-deps)
	bash scripts/test-deps

test: lint deps         ## install, lint, type-check and run the tests
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

bench: install          ## the performance suite (see docs/PERFORMANCE.md)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

fuzz: install           ## atheris over the post reader, dates, config, upstream parsers (5 min each)
	$(BIN)/pip install -q -e '.[fuzz]'
	$(BIN)/python scripts/fuzz.py $(FUZZ_ARGS)
