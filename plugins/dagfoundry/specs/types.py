"""Constrained value types shared by every kind's spec, each with a message that says what is allowed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainValidator, WithJsonSchema

from dagfoundry.specs.cron import validate_schedule_expression

_DAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_QUALIFIED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}(\.[A-Za-z_][A-Za-z0-9_]{0,127}){0,2}$")
_CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
_ASSET = re.compile(r"^[A-Za-z0-9_.:/\-=]{1,1500}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BYTE_SIZE = re.compile(r"^\s*(\d+)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.IGNORECASE)
_BYTE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MIN_BYTE_SIZE = 1024 * 1024
#: The shape of a schedule string for editors (lint also checks each field's range).
CRON_OR_PRESET = r"^\s*(@(hourly|daily|weekly|monthly|quarterly|yearly)|[0-9A-Za-z*/,\-]+(\s+[0-9A-Za-z*/,\-]+){4})\s*$"


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


def _byte_size(value: Any) -> int:
    expected = "a size such as '512KB', '128MB', '1GB' (1KB = 1024 bytes) or a number of bytes"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected {expected}, found {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _BYTE_SIZE.match(value)
        if not match:
            raise ValueError(f"expected {expected}, found {value!r}")
        size = int(match.group(1)) * _BYTE_UNITS[match.group(2)[0].lower()]
    if size < MIN_BYTE_SIZE:
        raise ValueError(f"{value!r} ({size} bytes) is too small: a size must be at least 1MB ({MIN_BYTE_SIZE} bytes)")
    return size


@dataclass(frozen=True)
class CronOrAssets:
    """A schedule that runs at each cron tick and whenever its Assets update (Airflow's ``AssetOrTimeSchedule``).

    Written ``{cron: "0 2 * * *", assets: [lake.compaction.events.orders]}``: the cron keeps
    data intervals (``airflow backfill create`` works), the Assets start a run when upstream
    data is published.
    """

    cron: str
    assets: tuple[str, ...]


def _schedule(value: Any) -> str | tuple[str, ...] | CronOrAssets | None:
    if value is None or isinstance(value, CronOrAssets):
        return value
    if isinstance(value, str):
        validate_schedule_expression(value)
        return value
    if isinstance(value, list | tuple) and value:
        return _asset_names(value)
    if isinstance(value, dict) and set(value) == {"cron", "assets"}:
        if not isinstance(value["cron"], str):
            raise ValueError(f"cron: expected a cron expression or preset, found {value['cron']!r}")
        validate_schedule_expression(value["cron"])
        if not isinstance(value["assets"], list | tuple) or not value["assets"]:
            raise ValueError(f"assets: expected a non-empty list of Asset names, found {value['assets']!r}")
        return CronOrAssets(value["cron"], _asset_names(value["assets"]))
    raise ValueError(
        "expected a cron expression, a preset such as '@daily', a non-empty list of Asset names, "
        f"{{cron: ..., assets: [...]}} (either starts a run) or null, found {value!r}"
    )


def _asset_names(value: list | tuple) -> tuple[str, ...]:
    return tuple(_asset_name(item) if isinstance(item, str) else _not_an_asset(item) for item in value)


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone: use an IANA name such as 'UTC' or 'Europe/Berlin'") from None
    return value


def _not_an_asset(item: Any) -> str:
    raise ValueError(f"{item!r} is not an Asset name (a string)")


#: A DAG name (becomes the dag_id).
DagName = Annotated[str, AfterValidator(_dag_name), WithJsonSchema({"type": "string", "pattern": _DAG_NAME.pattern})]
#: A plain identifier: column, key, feature or parameter name.
Identifier = Annotated[str, AfterValidator(_identifier), WithJsonSchema({"type": "string", "pattern": _IDENTIFIER.pattern})]
#: ``[database.][schema.]table``: never SQL, always quoted when used.
QualifiedName = Annotated[str, AfterValidator(_qualified_name), WithJsonSchema({"type": "string", "pattern": _QUALIFIED.pattern})]
#: An IANA time zone name (``UTC``, ``Europe/Berlin``).
TimeZoneName = Annotated[
    str,
    AfterValidator(_timezone),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z_]+(/[A-Za-z0-9_+\-]+)*$", "examples": ["UTC", "Europe/Berlin"]}),
]
#: An Airflow connection id (the secret lives in the connection, never in the spec).
ConnId = Annotated[str, AfterValidator(_conn_id), WithJsonSchema({"type": "string", "pattern": _CONN_ID.pattern})]
#: The name of an Airflow Asset produced or consumed by a DAG.
AssetName = Annotated[str, AfterValidator(_asset_name), WithJsonSchema({"type": "string", "pattern": _ASSET.pattern})]
#: A duration: ``30s``, ``5m``, ``2h``, ``1d``, ``1w`` or a number of seconds.
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+\s*(s|m|h|d|w)\s*$", "examples": ["30s", "5m", "2h", "1d"]},
                {"type": "number", "minimum": 0, "description": "seconds"},
            ]
        }
    ),
]
#: A size in bytes, at least 1 MiB: ``2048KB``, ``64MB``, ``1GB`` (binary units: 1KB = 1024 bytes) or an integer.
ByteSize = Annotated[
    int,
    PlainValidator(_byte_size),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^\s*\d+\s*([KkMmGgTt][Ii]?[Bb])\s*$",
                    "examples": ["64MB", "128MB", "1GB"],
                },
                {"type": "integer", "minimum": MIN_BYTE_SIZE, "description": "bytes"},
            ]
        }
    ),
]
_ASSET_LIST_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "pattern": _ASSET.pattern},
    "minItems": 1,
    "description": "Asset names",
}
#: A cron expression (5 fields), a preset (``@daily``...), a list of Asset names (run when
#: all of them update), a :class:`CronOrAssets` (either starts a run), or None (manual runs only).
Schedule = Annotated[
    str | tuple[str, ...] | CronOrAssets | None,
    PlainValidator(_schedule),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": CRON_OR_PRESET, "description": "cron expression (5 fields) or preset"},
                _ASSET_LIST_SCHEMA,
                {
                    "type": "object",
                    "properties": {
                        "cron": {"type": "string", "pattern": CRON_OR_PRESET},
                        "assets": _ASSET_LIST_SCHEMA,
                    },
                    "required": ["cron", "assets"],
                    "additionalProperties": False,
                    "description": "runs at each cron tick and whenever the Assets update",
                },
                {"type": "null"},
            ]
        }
    ),
]
