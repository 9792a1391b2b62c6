"""Constrained value types shared by every kind's spec, each with a message that says what is allowed."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from dagfoundry.specs.cron import validate_schedule_expression

_DAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_QUALIFIED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}(\.[A-Za-z_][A-Za-z0-9_]{0,127}){0,2}$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
_ASSET = re.compile(r"^[A-Za-z0-9_.:/\-=]{1,1500}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _dag_name(value: str) -> str:
    if not _DAG_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-100 lower-case letters, digits and '_', starting with a letter"
        )
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a valid identifier: use letters, digits and '_', starting with a letter")
    return value


def _qualified_name(value: str) -> str:
    if not _QUALIFIED.match(value):
        raise ValueError(
            f"{value!r} is not a valid table name: use [database.][schema.]table made of letters, digits and '_'"
        )
    return value


def _conn_id(value: str) -> str:
    if not _CONN_ID.match(value):
        raise ValueError(f"{value!r} is not a valid Airflow connection id: use letters, digits, '_', '-', '.'")
    return value


def _asset_name(value: str) -> str:
    if not _ASSET.match(value):
        raise ValueError(f"{value!r} is not a valid asset name: use letters, digits and _ . : / - =")
    return value


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30s', '5m', '2h', '1d' or a number of seconds, found {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, found {value}")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])
    raise ValueError(f"expected a duration such as '30s', '5m', '2h', '1d' or a number of seconds, found {value!r}")


def _schedule_expression(value: str) -> str:
    validate_schedule_expression(value)
    return value


#: A DAG name (becomes the dag_id).
DagName = Annotated[str, AfterValidator(_dag_name)]
#: A plain identifier: column, key, feature or parameter name.
Identifier = Annotated[str, AfterValidator(_identifier)]
#: ``[database.][schema.]table``: never SQL, always quoted when used.
QualifiedName = Annotated[str, AfterValidator(_qualified_name)]
#: An Airflow connection id (the secret lives in the connection, never in the spec).
ConnId = Annotated[str, AfterValidator(_conn_id)]
#: The name of an Airflow Asset produced or consumed by a DAG.
AssetName = Annotated[str, AfterValidator(_asset_name)]
#: A duration: ``30s``, ``5m``, ``2h``, ``1d``, ``1w`` or a number of seconds.
Duration = Annotated[timedelta, BeforeValidator(_duration)]
#: A cron expression (5 fields) or a preset (``@daily``...).
ScheduleExpression = Annotated[str, AfterValidator(_schedule_expression)]
