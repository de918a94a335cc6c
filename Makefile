# Two commands for a fresh machine: `make run` (the dashboard) and `make test` (every test).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test lint bench venv deps dev-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt requirements-scale.txt $(VENV)/.deps
	$(BIN)/pip install -q -r requirements-dev.txt -r requirements-scale.txt
	touch $@

deps: $(VENV)/.deps
dev-deps: $(VENV)/.dev-deps

run: $(VENV)/.deps
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.address 127.0.0.1

test: $(VENV)/.dev-deps
	$(BIN)/python -m pytest -q  # exit 5 (no test collected) fails too

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.dev-deps
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf $(VENV) .pytest_cache runs test-artifacts
