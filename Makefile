# One command per job. `make install` is idempotent: it reinstalls only when
# pyproject.toml is newer than the stamp left by the last install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/example.toml

.PHONY: install serve test lint format bench reference clean

install: $(STAMP)

# The compiled accelerator (setup.py) is rebuilt when one of its sources changes: the modules
# _accel.COMPILED names, read off the file (the package is not importable before install).
ACCEL_MODULES := $(shell grep -o '"appserver\.[A-Za-z0-9_.]*"' src/appserver/_accel.py | tr -d '"')
ACCEL_SOURCES := $(patsubst %,src/%.py,$(subst .,/,$(ACCEL_MODULES))) src/appserver/_accel.py setup.py

$(STAMP): pyproject.toml $(ACCEL_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	@$(BIN)/appserver --version | grep -q "compiled" || echo "warning: the compiled accelerator was not built; appserver runs on its pure-Python modules ($$($(BIN)/appserver --version))"
	touch $(STAMP)

serve: install
	$(BIN)/appserver serve $(CONFIG)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix src tests examples benchmarks
	$(BIN)/ruff format src tests examples benchmarks

bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

reference: install
	$(BIN)/python -m appserver.config.reference README.md

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	find src -name '*.so' -delete  # the compiled accelerator, and mypyc's shared library
