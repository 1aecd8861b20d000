# Set-up and entry points. `make run` and `make test` each do everything on a fresh machine.
# torch: take a locally provided wheel first (pip's find-links, e.g. a CPU build); where there is
# none, that step fails harmlessly and `pip install -e .` gets torch from the index as usual.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test

$(BIN)/harness: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	-$(BIN)/pip install -q --no-index --no-deps torch
	$(BIN)/pip install -q -e ".[test]"
	touch $(BIN)/harness

install: $(BIN)/harness

run: install
	$(BIN)/harness run experiments/instructgpt.toml

test: install
	$(BIN)/python -m pytest -q
