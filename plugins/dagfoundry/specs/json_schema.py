"""JSON Schema of each kind, generated from the same models lint validates with.

Editors validate specs with these (``# yaml-language-server: $schema=...``). They say what
lint says where JSON Schema can: types, ranges, enums, name and table patterns, duration
and size forms with defaults written as in YAML (``5m``, not ``PT5M``), each kind's
``max_active_runs`` bound and its manual-trigger ``params``. Rules across keys or specs
(a connect section for mode: connect, unknown Assets...) are lint's alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import GenerateJsonSchema

if TYPE_CHECKING:
    from dagfoundry.specs.base import DagSpec


def duration_text(value: timedelta) -> str | float:
    """Write a duration as a spec does: the largest whole unit (``5m``, ``2h``), else seconds."""
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return seconds


class _SpecSchemaGenerator(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return duration_text(dft)
        return super().encode_default(dft)


def spec_json_schema(kind: str, model: type[DagSpec]) -> dict[str, Any]:
    """Return the JSON Schema of ``kind``'s specs."""
    schema = model.model_json_schema(mode="validation", schema_generator=_SpecSchemaGenerator)
    schema["title"] = f"dagfoundry {kind} spec"
    properties = schema["properties"]
    properties["max_active_runs"]["maximum"] = model.max_active_runs_limit
    properties["params"] = {
        "type": "object",
        "description": properties["params"].get("description", ""),
        "additionalProperties": False,
        "properties": {name: _param_schema(declared) for name, declared in model.declared_params.items()},
    }
    return schema


def _param_schema(declared: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [declared.type, "null"], "description": declared.description}
    if declared.enum:
        schema["enum"] = list(declared.enum)
    if declared.format:
        schema["format"] = declared.format
    if declared.default is not None:
        schema["default"] = declared.default
    return schema
