# cdc-sync — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python for the project venv (Airflow): 3.12 like MWAA, else 3.13 / 3.11.
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
PYTHON ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python3.12) $(shell command -v python3.12 python3.13 python3.11 2>/dev/null))
# The BigQuery emulator needs Python >= 3.13.
PYTHON313 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.13*/bin/python3.13) $(shell command -v python3.13 python3.14 2>/dev/null))

VENV := .venv
VENV_BQ := .venv-bigquery
VENV_AF30 := .venv-airflow-3.0
UV := $(VENV)/bin/uv

.PHONY: help venv test test-unit test-airflow-3.0 test-deployed lint docs demo demo-ui airflow airflow-stop pools bench clean mwaa-package

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@test -n "$(PYTHON)" || { echo "No Python 3.11-3.13 found: install python3.12 (pyenv install 3.12) or set PYTHON=/path/to/python"; exit 1; }
	@echo "==> creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip uv
	$(UV) pip install -q --python $(VENV)/bin/python -r requirements-dev.txt -c constraints.txt
	@touch $@

$(VENV_BQ)/.installed: requirements-bigquery-emulator.txt
	@test -n "$(PYTHON313)" || { echo "The BigQuery emulator needs Python >= 3.13: pyenv install 3.13 or set PYTHON313=/path/to/python3.13"; exit 1; }
	@echo "==> creating $(VENV_BQ) with $(PYTHON313)"
	$(PYTHON313) -m venv $(VENV_BQ)
	$(VENV_BQ)/bin/python -m pip install -q --upgrade pip uv
	$(VENV_BQ)/bin/uv pip install -q --python $(VENV_BQ)/bin/python -r requirements-bigquery-emulator.txt
	# DuckDB would download these extensions at run time; install the PyPI copies instead.
	$(VENV_BQ)/bin/python -c "from duckdb_extensions import import_extension as i; [i(e) for e in ('icu', 'ducklake', 'spatial')]"
	@touch $@

$(VENV_AF30)/.installed: requirements.txt requirements-airflow-3.0.txt constraints-airflow-3.0.txt $(VENV)/.installed
	@echo "==> creating $(VENV_AF30) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV_AF30)
	$(UV) pip install -q --python $(VENV_AF30)/bin/python -r requirements-airflow-3.0.txt -c constraints-airflow-3.0.txt
	@touch $@

venv: $(VENV)/.installed $(VENV_BQ)/.installed ## Create both virtualenvs (Airflow + tests, BigQuery emulator)

test: venv chromium ## Run every test against local MariaDB, moto and the BigQuery emulator; print the library's coverage
	$(VENV)/bin/python tools/local_stack.py check
	$(VENV)/bin/python -m pytest --cov=cdc_sync --cov-report=term:skip-covered

test-airflow-3.0: venv $(VENV_AF30)/.installed ## The tests that run Airflow code (marker `airflow`) and the unit tests again on Airflow 3.0.6, MWAA's oldest
	$(VENV_AF30)/bin/python -m pytest -m "(airflow or not services) and not deployed and not own_server"

test-deployed: venv chromium ## Only the tests that start a real Airflow (scheduler, triggerer, API server on PostgreSQL) and the UI test
	$(VENV)/bin/python tools/local_stack.py check
	$(VENV)/bin/python -m pytest -m deployed

test-unit: venv ## Only the tests that need no services and no dag.test() (markers `services`, `airflow`)
	$(VENV)/bin/python -m pytest -m "not services and not airflow"

lint: venv ## ruff (lint and format check) over everything, mypy over the library
	$(VENV)/bin/ruff check plugins dags tests tools bench
	$(VENV)/bin/ruff format --check plugins dags tests tools bench
	$(VENV)/bin/mypy

docs: venv ## Regenerate docs/configuration.md from the pipelines JSON schema
	$(VENV)/bin/python tools/config_reference.py

demo: venv ## Run DMS → BigQuery + Aurora end to end on local stand-ins and print what it did
	$(VENV)/bin/python tools/local_stack.py check
	$(VENV)/bin/python tools/demo.py

airflow: venv ## Start a local Airflow (api-server, scheduler, dag-processor, triggerer on PostgreSQL) on the stand-ins; prints the UI address
	$(VENV)/bin/python tools/local_stack.py check
	$(VENV)/bin/python tools/local_airflow.py up

airflow-stop: ## Stop exactly what `make airflow` / `make demo-ui` started
	@test -x $(VENV)/bin/python && $(VENV)/bin/python tools/local_airflow.py down || python3 tools/local_airflow.py down

demo-ui: venv ## The demo under the local Airflow: runs it from the REST API, leaves the UI up to look at
	$(VENV)/bin/python tools/local_stack.py check
	$(VENV)/bin/python tools/demo_ui.py

# The UI test drives Debian's chromium (never a browser download).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "==> installing Debian's chromium for the UI test"; \
	    apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else echo "The UI test needs Chromium: install it (Debian: sudo apt-get install chromium) or set CDC_SYNC_CHROMIUM=/path/to/chromium"; fi; }

pools: venv ## Create the Airflow pools the pipeline config names (Aurora connection cap)
	$(VENV)/bin/python tools/pools.py $(CONFIG)

mwaa-package: $(VENV)/.installed ## Build what Amazon MWAA takes (DAGs folder, plugins.zip, requirements.txt) into build/mwaa/
	$(VENV)/bin/python tools/mwaa_package.py $(if $(CONFIG),--config $(CONFIG))

bench: venv ## Benchmarks (listing cost, loader memory, Aurora rates, reconciliation vs reladiff, capture rates, compaction, landing → visible latency); print their figures
	$(VENV)/bin/python bench/bench_listing.py
	$(VENV)/bin/python bench/bench_loader_memory.py
	$(VENV)/bin/python bench/bench_aurora.py
	$(VENV)/bin/python bench/bench_reconcile.py
	$(VENV)/bin/python bench/bench_audit_log.py
	$(VENV)/bin/python bench/bench_dynamodb_stream.py
	$(VENV)/bin/python bench/bench_event_latency.py
	$(VENV)/bin/python bench/bench_backfill.py
	$(VENV)/bin/python bench/bench_binlog.py
	$(VENV)/bin/python bench/bench_compaction.py
	$(VENV)/bin/python bench/bench_tombstone_purge.py

clean: ## Remove the virtualenvs and caches
	rm -rf $(VENV) $(VENV_BQ) $(VENV_AF30) .pytest_cache .ruff_cache .coverage
