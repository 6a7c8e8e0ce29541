# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Everything is installed from the lock files into .venv (Airflow 3) and .venv-af2 (Airflow 2.11).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
AF2_VENV := .venv-af2
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_LINK_MODE := copy
PYTEST_ARGS ?=

.PHONY: help venv venv-af2 lock lock-check lint typecheck system-deps provisioned test test-af2 demo docs clean

help:
	@echo "make demo      set up and run every service end to end on embedded defaults"
	@echo "make test      set up and run lint, type checks and the whole test suite"
	@echo "make test-af2  the Airflow 2.11 compatibility job (DagBag + dag.test)"
	@echo "make lock      re-resolve uv.lock and requirements/af2.lock after changing dependencies"
	@echo "make system-deps  install the Debian packages the UI tests need (root or sudo)"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The venv is rebuilt whenever the lock changes; `uv sync --frozen` never re-resolves.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --extra airflow
	touch $@

venv: $(VENV)/.synced

$(AF2_VENV)/.synced: $(UV) requirements/af2.lock pyproject.toml
	$(UV) venv --allow-existing --python $(PYTHON) $(AF2_VENV)
	VIRTUAL_ENV=$(CURDIR)/$(AF2_VENV) $(UV) pip sync requirements/af2.lock
	VIRTUAL_ENV=$(CURDIR)/$(AF2_VENV) $(UV) pip install --no-deps -e .
	touch $@

venv-af2: $(AF2_VENV)/.synced

lock: $(UV)
	$(UV) lock
	$(UV) pip compile --quiet --python-version 3.11 requirements/af2.in pyproject.toml -o requirements/af2.lock

# Fails when pyproject.toml changed without `make lock`.
lock-check: $(UV)
	$(UV) lock --check

lint: venv
	$(BIN)/ruff check src tests dags benchmarks
	$(BIN)/ruff format --check src tests dags benchmarks

typecheck: venv
	$(BIN)/mypy

# The one provisioning step for system packages (apt-get; root or sudo). .ci/run and the README's
# set-up call it on its own; `make test` only depends on `provisioned`, which calls it when a
# package is missing (a fresh machine) and otherwise checks presence without touching apt.
system-deps:
	bash scripts/system-deps.sh install

provisioned:
	@bash scripts/system-deps.sh check || $(MAKE) --no-print-directory system-deps

# --durations=15: the slowest tests, to keep the whole run near its 15-minute budget.
test: lock-check venv lint typecheck provisioned
	$(BIN)/pytest --durations=15 $(PYTEST_ARGS)

test-af2: venv-af2
	$(AF2_VENV)/bin/pytest -p no:cacheprovider tests/dags $(PYTEST_ARGS)

demo: venv
	bash scripts/demo.sh

docs: venv
	$(BIN)/guardian config docs

clean:
	rm -rf $(VENV) $(AF2_VENV) .tools .airflow var
