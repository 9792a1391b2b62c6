# dagfoundry: `make demo` runs the whole lifecycle through a real scheduler; `make test` runs
# every test; `make airflow` serves the demo's state in a real local Airflow (`make airflow-stop`
# ends it); `make demo-inprocess` runs three kinds through dag.test() without a scheduler.
# Each creates .venv and installs requirements.txt plus the package (editable) on first use,
# and again when requirements.txt or pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export GX_ANALYTICS_ENABLED := false
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

.PHONY: demo demo-inprocess demo-scheduler test lint bench services venv clean airflow airflow-stop

venv: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@# Venvs made before the package had a build system: drop the old path hack and dag-factory
	@# (benchmark-only now: bench/requirements.txt, installed by bench/parse_bench.py).
	@$(PY) -c "import pathlib,site; pathlib.Path(site.getsitepackages()[0],'dagfoundry-project.pth').unlink(missing_ok=True)"
	@$(PY) -m pip uninstall --quiet --yes dag-factory 2>/dev/null || true
	@# The package itself, editable: the `dagfoundry` command and Airflow's provider entry point.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

services:
	@bash scripts/ensure_system_packages.sh
	@bash scripts/ensure_postgres_logical.sh

lint: $(INSTALLED)
	$(PY) -m ruff check plugins dags include tests bench
	$(PY) -m mypy
	$(PY) -m dagfoundry lint dag_configs

test: $(INSTALLED) services lint
	$(PY) -m pytest

# The whole lifecycle through a real scheduler: five DAGs chained by Assets (README, "The
# lifecycle demo"). Airflow and MLflow keep running afterwards; run it again for another round.
demo: $(INSTALLED) services
	$(PY) include/demo/run_demo.py

# The earlier name of `make demo`.
demo-scheduler: demo

# Three kinds (CDC, compaction, features) through dag.test() in one process: no scheduler.
demo-inprocess: $(INSTALLED) services
	$(PY) include/demo/inprocess_demo.py

bench: $(INSTALLED) services
	$(PY) bench/parse_bench.py

# A real Airflow (api-server, scheduler, dag-processor, triggerer, LocalExecutor) on .demo/:
# prints the URL and the login; Ctrl-C or `make airflow-stop` stops every process.
airflow: $(INSTALLED) services
	$(PY) include/airflow_local.py run

airflow-stop:
	$(PY) include/airflow_local.py stop

clean:
	rm -rf .airflow .demo .pytest_cache .ruff_cache .bench-deps build
