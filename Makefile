# The README's two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/combax demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

bench: $(STAMP)
	@set -e; for f in benchmarks/[!_]*.py; do echo "== $$f"; $(BIN)/python $$f; done

lint: $(STAMP)
	$(BIN)/ruff check combax tests benchmarks
	$(BIN)/ruff format --check combax tests benchmarks

clean:
	rm -rf $(VENV) demo_out .pytest_cache
