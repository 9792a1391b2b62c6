"""Where the demos keep their state (``.demo/``) and how their lake mirrors are checked.

Shared by ``make demo`` (``include/demo/run_demo.py``), ``make demo-inprocess``
(``include/demo/inprocess_demo.py``), ``make airflow`` and the end-to-end test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from include.demo import shop_source

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / ".demo"
#: The shop tables the CDC example mirrors, with the columns compared to PostgreSQL.
MIRRORED = {
    "public.customers": ["customer_id", "name", "city"],
    "public.orders": ["order_id", "customer_id", "amount", "status", "ordered_at"],
}


def demo_environment() -> dict[str, str]:
    """Return the settings of the demo's Airflow and lake (``make airflow`` serves the same state)."""
    return {
        "AIRFLOW_HOME": str(DEMO / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "DAGFOUNDRY_CONFIG_DIR": str(ROOT / "dag_configs"),
        "DAGFOUNDRY_LAKE_ROOT": str(DEMO / "lake"),
        "AIRFLOW_CONN_SHOP_POSTGRES": shop_connection(shop_source.DEMO_DATABASE),
        "AIRFLOW_CONN_SPARK_LOCAL": json.dumps({"conn_type": "spark", "host": "local[*]"}),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        "GX_ANALYTICS_ENABLED": "false",
    }


def shop_connection(database: str) -> str:
    """Return the ``AIRFLOW_CONN_SHOP_POSTGRES`` value (JSON) of a shop database on the local PostgreSQL."""
    return json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
                       "schema": database})


def compare_mirrors(lake: Path, database: str = shop_source.DEMO_DATABASE) -> dict[str, tuple[int, int, bool]]:
    """Compare each lake mirror of the shop with its PostgreSQL table: table -> (source rows, mirror rows, equal)."""
    import pyarrow.parquet as pq

    found = {}
    for table_id, columns in MIRRORED.items():
        mirror = pq.read_table(lake / "mirror" / "shop" / table_id, columns=columns)
        mirrored = sorted(
            tuple(None if v is None else str(v) for v in row)
            for row in zip(*(mirror.column(c).to_pylist() for c in columns), strict=True)
        )
        source = shop_source.table_rows(table_id.split(".")[1], columns, database=database)
        found[table_id] = (len(source), len(mirrored), normalized(mirrored) == normalized(source))
    return found


def normalized(rows: list[tuple]) -> list[tuple]:
    """Sort rows, timestamps compared as instants (Arrow prints them with 'T', PostgreSQL with ' ')."""
    return sorted(tuple(v.replace("T", " ") if isinstance(v, str) else v for v in row) for row in rows)
