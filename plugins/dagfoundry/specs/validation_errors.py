"""Turn pydantic validation errors into located, readable spec errors."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, Tag, ValidationError

from dagfoundry.errors import SpecError
from dagfoundry.specs.base import RuleViolation
from dagfoundry.specs.documents import Document, KeyPath, format_key_path


def spec_errors_from_validation(
    exc: ValidationError, document: Document, model: type[BaseModel], spec_path: str
) -> list[SpecError]:
    """Locate each pydantic error in the document and phrase it for a data engineer.

    :param exc: the validation error
    :param document: the merged document that was validated (positions may point into defaults files)
    :param model: the model that was validated, to suggest key names
    :param spec_path: the spec file, named when an error sits in a defaults file
    """
    errors = []
    seen: set[tuple[str, str]] = set()
    items: list[dict[str, Any]] = [dict(e) for e in exc.errors(include_url=False)]
    for item in items:
        if item["type"] == "too_short" and _has_deeper_error(item, items):
            continue  # pydantic counts only the valid items: the item's own error says it all
        if item["type"] == "missing" and _is_misspelt(item, items):
            continue  # the unknown key next to it is the same mistake, and its line says the fix
        rule = item.get("ctx", {}).get("error")
        if isinstance(rule, RuleViolation):
            item = {**item, "loc": (*item["loc"], *rule.key_path), "msg": rule.message, "type": "rule"}
        key_path = _data_path(document.data, item["loc"])
        message = _message(item, key_path, model, tuple(item["loc"]))
        key = format_key_path(key_path)
        if (key, message) in seen:
            continue
        seen.add((key, message))
        lookup = key_path if item["type"] != "missing" else key_path[:-1]
        position = document.position_of(lookup)
        if position.path != spec_path:
            message = f"{message} (set in defaults, while validating {spec_path})"
        errors.append(SpecError(position.path, position.line, position.column, key, message))
    return errors


def _is_misspelt(missing: dict[str, Any], items: list[dict[str, Any]]) -> bool:
    """Whether a missing key was written misspelt: an unknown key of the same mapping is close to it."""
    parent, name = missing["loc"][:-1], str(missing["loc"][-1])
    written = [str(i["loc"][-1]) for i in items if i["type"] == "extra_forbidden" and i["loc"][:-1] == parent]
    return bool(difflib.get_close_matches(name, written, n=1, cutoff=0.6))


def _has_deeper_error(item: dict[str, Any], items: list[dict[str, Any]]) -> bool:
    loc = item["loc"]
    return any(other is not item and other["loc"][: len(loc)] == loc and len(other["loc"]) > len(loc) for other in items)


def _data_path(data: Any, loc: tuple[Any, ...]) -> KeyPath:
    """Follow ``loc`` through the data, dropping union tags and model names pydantic adds."""
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            path.append(part)
            current = current[part]
        elif isinstance(part, str) and index == len(loc) - 1 and isinstance(current, dict):
            path.append(part)  # a missing key: name it, position at its parent
        # anything else is a union member name or tag: not part of the user's data
    return tuple(path)


def _message(item: dict[str, Any], key_path: KeyPath, model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = item["type"]
    found = item.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        name = str(key_path[-1]) if key_path else "?"
        allowed = [key for key in _allowed_keys(model, loc[:-1]) if key != name]
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        return f"unknown key {name!r}{hint}"
    if kind == "too_short":
        ctx = item.get("ctx", {})
        return f"needs at least {ctx.get('min_length')} item(s), found {ctx.get('actual_length')}"
    text = str(item["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    if kind == "rule":
        return text
    if kind in ("literal_error", "enum"):
        return f"{text}, found {found!r}"
    if not isinstance(found, dict | list):
        return f"{text}, found {found!r}"
    return text


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Return the field names of the model pydantic's ``loc`` leads to (union tags pick the member)."""
    candidates: list[tuple[Any, str | None]] = [(model, None)]
    for part in loc:
        following: list[tuple[Any, str | None]] = []
        tagged = [c for c in candidates if c[1] == part]
        if tagged:  # a discriminated union's tag: keep the member it names
            candidates = [(c[0], None) for c in tagged]
            continue
        for candidate, _ in candidates:
            if isinstance(part, int):
                following.extend(_item_types(candidate))
            elif _is_model(candidate) and part in candidate.model_fields:
                following.extend(_members(candidate.model_fields[part].annotation))
            elif _is_model(candidate):
                following.append((candidate, None))  # a union member's class name: stay
        candidates = following
    names: set[str] = set()
    for candidate, _ in candidates:
        if _is_model(candidate):
            names.update(candidate.model_fields)
    return sorted(names)


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _members(annotation: Any, tag: str | None = None) -> list[tuple[Any, str | None]]:
    """Flatten unions and ``Annotated``, keeping each member's discriminator tag."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        found = next((m.tag for m in metadata if isinstance(m, Tag)), tag)
        return _members(inner, found)
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _members(arg)]
    return [(annotation, tag)]


def _item_types(annotation: Any) -> list[tuple[Any, str | None]]:
    result = []
    for flat, _ in _members(annotation):
        if typing.get_origin(flat) in (list, tuple, set, frozenset):
            for arg in typing.get_args(flat):
                if arg is not Ellipsis:
                    result.extend(_members(arg))
    return result
