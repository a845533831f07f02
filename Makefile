# living-review: `make run` (the main job), `make test` (the whole suite), `make demo` (offline).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)

export PYTHONPATH := $(CURDIR)
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export GX_ANALYTICS_ENABLED := False

.PHONY: run demo test mutation bench audit quarantine report check-config airflow-db clean help

help:
	@echo "make run          run every configured review once for today (live APIs)"
	@echo "make test         the whole test suite (offline)"
	@echo "make demo         the same DAGs offline against bundled local stand-ins"
	@echo "make mutation     mutation testing of the critical modules (mutmut; not part of make test)"
	@echo "make bench        performance benchmarks (prints a table, writes bench/results.json)"
	@echo "make quarantine   list what is in quarantine and why"
	@echo "make report       write the living-review page as static HTML (<data_dir>/report/)"
	@echo "make check-config validate include/reviews.yaml"

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing requirements into $(VENV) (first run takes ~1-2 minutes)..."
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

venv: $(VENV)/.installed

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	@$(PY) -m airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)
	@$(PY) -m airflow pools import include/pools.json >> $(AIRFLOW_HOME)/migrate.log 2>&1

airflow-db: $(AIRFLOW_HOME)/airflow.db

check-config: $(VENV)/.installed
	@$(PY) -m include.living_review.cli check-config

# An interactive run fails fast: no Airflow task retries, fewer HTTP tries (the
# scheduled deployment keeps the defaults). Override with e.g. LIVING_REVIEW_TASK_RETRIES=2.
run: airflow-db
	@LIVING_REVIEW_TASK_RETRIES=$${LIVING_REVIEW_TASK_RETRIES:-0} LIVING_REVIEW_HTTP_MAX_TRIES=$${LIVING_REVIEW_HTTP_MAX_TRIES:-3} \
		$(PY) -m include.living_review.cli run

demo: airflow-db
	@$(PY) -m tests.fakes.demo

test: $(VENV)/.installed
	@$(PY) -m pytest

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither" >&2)
	@touch $@

# Mutation testing, one target at a time (MUTATION="ids storage" for some; MUTATION_JOBS=1
# for one worker). Prints each file's score and the surviving mutants; see docs/DEVELOPING.md.
mutation: $(VENV)/.installed-dev
	@$(PY) -m scripts.mutation $(MUTATION)

bench: airflow-db
	@$(PY) -m bench.run_all

report: $(VENV)/.installed
	@$(PY) -m include.living_review.report

screenshots: $(VENV)/.installed
	@$(PY) -m scripts.screenshot

quarantine: $(VENV)/.installed
	@$(PY) -m include.living_review.cli quarantine

audit: $(VENV)/.installed
	@$(PY) -m pip install --quiet pip-audit && $(VENV)/bin/pip-audit -r requirements.txt

clean:
	rm -rf .airflow demo-output .mutation
