# Two entry points (see README): `make quickstart` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/quickstart

.PHONY: venv install install-test quickstart test lint format

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/pip install --quiet -e .

install-test: venv
	$(BIN)/pip install --quiet -e ".[test,tfds]"

quickstart: install
	$(BIN)/python -m rewardjax.main --config=configs/quickstart.py --workdir=$(WORKDIR)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -n 2 --durations=15 tests
