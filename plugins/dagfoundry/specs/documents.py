"""Read YAML spec documents, keeping the position of every key.

Specs are composed with libyaml's ``CSafeLoader`` (about 8x faster than pure-Python PyYAML,
and it keeps node marks), then turned into plain Python data by hand, so that each key
path maps to the file, line and column where it was written. Only the safe tags exist:
``!!python/...`` tags are refused with their position. Duplicate keys, which YAML would
silently resolve to the last one, are errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from dagfoundry.errors import SpecError, SpecErrors

try:
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

#: A key path: mapping keys (str) and sequence indexes (int).
KeyPath = tuple[str | int, ...]

#: Largest spec or defaults file read (1 MiB): a pasted dump is a mistake, and the spec's text
#: becomes the DAG's documentation.
MAX_SPEC_BYTES = 1024 * 1024

_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Position:
    """Where a value was written: file, 1-based line and column."""

    path: str
    line: int
    column: int


@dataclass
class Document:
    """A YAML mapping read from one file, with the position of every key path.

    :param path: the file, as shown in messages
    :param data: the plain data (dicts, lists, scalars), interpolated
    :param positions: key path -> where its value starts
    :param raw_scalars: key path -> the text as written, for every interpolated scalar
        (rendered documentation shows this, never the environment's value)
    """

    path: str
    data: dict[str, Any]
    positions: dict[KeyPath, Position] = field(default_factory=dict)
    raw_scalars: dict[KeyPath, str] = field(default_factory=dict)

    def position_of(self, key_path: KeyPath) -> Position:
        """Return the position of the longest prefix of ``key_path`` that was written."""
        for cut in range(len(key_path), -1, -1):
            found = self.positions.get(key_path[:cut])
            if found is not None:
                return found
        return Position(self.path, 1, 1)


def format_key_path(key_path: KeyPath) -> str:
    """Render ``("tables", 2, "primary_key")`` as ``tables[2].primary_key``."""
    out = ""
    for part in key_path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_spec_text(path: os.PathLike[str] | str, shown: str) -> str:
    """Read a spec or defaults file as UTF-8 text, refusing unreadable and oversized files.

    :param path: the file on disk
    :param shown: the file as named in messages
    :raises SpecErrors: one located error (the bad byte's line, or 1:1) when the file cannot be used
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecErrors([SpecError(shown, 1, 1, "", f"the file cannot be read: {exc.strerror or exc}")]) from None
    if len(data) > MAX_SPEC_BYTES:
        message = f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB; a spec describes a pipeline, it holds no data"
        raise SpecErrors([SpecError(shown, 1, 1, "", message)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        raise SpecErrors([SpecError(shown, line, column, "", message)]) from None


def read_document(path: str, text: str | None = None, environ: Mapping[str, str] | None = None) -> Document:
    """Read one YAML file that must hold a single mapping.

    :param path: the file to read (and to name in errors)
    :param text: the file's text, when already read
    :param environ: variables for ``${VAR}`` interpolation (``os.environ`` by default)
    :raises SpecErrors: listing every problem found (syntax, tags, duplicates, variables)
    """
    if text is None:
        text = read_spec_text(path, path)
    reader = _NodeReader(path, os.environ if environ is None else environ)
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise SpecErrors([_syntax_error(path, text, exc)]) from None
    except yaml.YAMLError as exc:
        raise SpecErrors([SpecError(path, 1, 1, "", f"not valid YAML: {exc}")]) from None
    if root is None:
        message = "the file is empty; a spec is a mapping with at least 'kind' and 'name'"
        raise SpecErrors([SpecError(path, 1, 1, "", message)])
    if not isinstance(root, yaml.MappingNode):
        found = "a list" if isinstance(root, yaml.SequenceNode) else "a single value"
        line, column = root.start_mark.line + 1, root.start_mark.column + 1
        message = f"the top level is {found}; a spec must be a mapping of keys"
        raise SpecErrors([SpecError(path, line, column, "", message)])
    data = reader.read(root, ())
    reader.raise_errors()
    return Document(path=path, data=data, positions=reader.positions, raw_scalars=reader.raw_scalars)


def _syntax_error(path: str, text: str, exc: yaml.MarkedYAMLError) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "syntax error"
    lines = text.splitlines()
    if mark and mark.line < len(lines) and "\t" in lines[mark.line][: mark.column + 1]:
        return SpecError(path, line, column, "", "YAML syntax error: a tab is used for indentation; indent with spaces")
    context = ""
    if exc.context and exc.context_mark:
        context = f" ({exc.context} that started at line {exc.context_mark.line + 1})"
    elif exc.context:
        context = f" ({exc.context})"
    return SpecError(path, line, column, "", f"YAML syntax error: {problem}{context}")


class _NodeReader:
    """Turn a composed node tree into data, recording positions and collecting errors."""

    def __init__(self, path: str, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ
        self.positions: dict[KeyPath, Position] = {}
        self.raw_scalars: dict[KeyPath, str] = {}
        self.errors: list[SpecError] = []
        self._constructor = yaml.SafeLoader("")

    def read(self, node: yaml.Node, key_path: KeyPath) -> Any:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        # A mapping value is located at its key (where the user looks); list items at themselves.
        self.positions.setdefault(key_path, Position(self.path, line, column))
        line, column = self.positions[key_path].line, self.positions[key_path].column
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            self._error(line, column, key_path, f"tag {node.tag!r} is not allowed; specs hold plain data only")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._read_mapping(node, key_path)
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, (*key_path, index)) for index, item in enumerate(node.value)]
        return self._read_scalar(node, key_path)

    def _read_mapping(self, node: yaml.MappingNode, key_path: KeyPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._error(line, column, key_path, "YAML merge keys ('<<') are not supported; use defaults.yaml")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._error(line, column, key_path, "a key must be a plain string")
                continue
            key = str(key_node.value)
            child = (*key_path, key)
            if key in result:
                first = self.positions[child]
                self._error(line, column, child, f"duplicate key (first written at line {first.line})")
                continue
            self.positions[child] = Position(self.path, line, column)
            result[key] = self.read(value_node, child)
        return result

    def _read_scalar(self, node: yaml.Node, key_path: KeyPath) -> Any:
        line, column = self.positions[key_path].line, self.positions[key_path].column
        if not node.tag.startswith("tag:yaml.org,2002:"):
            self._error(line, column, key_path, f"tag {node.tag!r} is not allowed; specs hold plain data only")
            return None
        try:
            value = self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self._error(line, column, key_path, f"cannot read value {node.value!r}: {exc.problem}")
            return None
        except ValueError as exc:  # e.g. a date such as 2024-13-45
            self._error(line, column, key_path, f"{node.value!r} is not a valid date or time: {exc}")
            return None
        if isinstance(value, str) and "${" in value:
            return self._interpolate(value, key_path)
        return value

    def _interpolate(self, text: str, key_path: KeyPath) -> str:
        self.raw_scalars[key_path] = text

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in self.environ:
                return self.environ[name]
            if default is not None:
                return default
            position = self.positions[key_path]
            self._error(
                position.line,
                position.column,
                key_path,
                f"environment variable {name!r} is not set; set it or write ${{{name}:-default}}",
            )
            return ""

        return _INTERPOLATION.sub(substitute, text)

    def _error(self, line: int, column: int, key_path: KeyPath, message: str) -> None:
        self.errors.append(SpecError(self.path, line, column, format_key_path(key_path), message))

    def raise_errors(self) -> None:
        if self.errors:
            raise SpecErrors(self.errors)
