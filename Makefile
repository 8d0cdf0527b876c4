# The two commands of the README's quickstart, plus the benchmark.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench bench-quick lint clean

$(BIN)/dbt-stripe-sync: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

install: $(BIN)/dbt-stripe-sync

demo: install  ## build integration_tests on DuckDB, then check, plan and sync into Stripe
	$(BIN)/python scripts/demo.py

test: install  ## the whole test suite, a worker per core (a test file stays on one worker)
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=15 $(PYTEST_ARGS)

bench: install  ## this tool vs the naive loop vs the floor, full size
	$(BIN)/python -m benchmarks.run

bench-quick: install  ## the same scenarios, small (under 2 minutes)
	$(BIN)/python -m benchmarks.run --quick

lint: install
	$(BIN)/ruff check dbt_stripe_activation tests stripe_emulator benchmarks scripts
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .demo .bench integration_tests/target integration_tests/dbt_packages
