# dagfoundry: `make demo` runs the main job end to end; `make test` runs every test.
# Both create .venv and install requirements.txt on first use (and again when it changes).

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

.PHONY: demo test lint bench services venv clean

venv: $(INSTALLED)

$(INSTALLED): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@# Make the package and include/ importable from the venv, so `python -m dagfoundry` works anywhere.
	@$(PY) -c "import site,sys; open(site.getsitepackages()[0]+'/dagfoundry-project.pth','w').write('$(CURDIR)/plugins\n$(CURDIR)\n')"
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

demo: $(INSTALLED) services
	$(PY) include/demo/run_demo.py

bench: $(INSTALLED) services
	$(PY) bench/parse_bench.py

clean:
	rm -rf .airflow .demo .pytest_cache .ruff_cache
