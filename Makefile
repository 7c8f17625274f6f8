# The two commands of the README: `make demo` and `make test`. Both bootstrap a virtualenv.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DB ?= out/sample.duckdb

.PHONY: demo test lint dashboard kafka-up kafka-down bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/oddsflow replay data/sample.jsonl.gz --db $(DB)
	@echo "dashboard: $(BIN)/oddsflow dashboard --db $(DB)   (then open http://localhost:8501)"

dashboard: $(STAMP)
	$(BIN)/oddsflow dashboard --db $(DB)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/oddsflow kafka up
	$(BIN)/pytest

kafka-up: $(STAMP)
	$(BIN)/oddsflow kafka up

kafka-down: $(STAMP)
	$(BIN)/oddsflow kafka down

bench: $(STAMP)
	$(BIN)/python -m benchmarks.replay_bench

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
