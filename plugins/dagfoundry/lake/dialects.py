"""The lake jobs' SQL is written once, in Spark SQL; :func:`for_engine` gives each engine its dialect.

Spark runs the generated text as written; the embedded engine runs it transpiled to DuckDB by
SQLGlot (Spark SQL is the source dialect because the other direction did not transpile what
the jobs need: docs/decisions.md, *One job definition, two engines*). The feature job, the
CDC mirror and the training-set join all go through here.

``sqlglot`` (pure Python) is imported inside the function.
"""

from __future__ import annotations

#: The engines a lake job runs on, as the specs' ``engine:`` key names them.
ENGINES = ("duckdb", "spark")


def for_engine(sql: str, engine: str) -> str:
    """Return Spark SQL ``sql`` in the dialect of ``engine`` (``spark`` or ``duckdb``).

    :raises ValueError: for another engine name
    """
    if engine == "spark":
        return sql
    if engine == "duckdb":
        import sqlglot

        return sqlglot.transpile(sql, read="spark", write="duckdb")[0]
    raise ValueError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
