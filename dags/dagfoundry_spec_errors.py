"""Airflow import error listing every broken dagfoundry spec (file:line:col: key: reason).

This file defines no DAG; the valid specs' DAGs come from dagfoundry_dags.py.
"""

from dagfoundry.dag_files import raise_spec_errors

raise_spec_errors()
