"""The one exception hierarchy of dagfoundry.

Every error says what was found, where, and what to do next.
"""

from __future__ import annotations


class DagfoundryError(Exception):
    """Base class of every error raised by dagfoundry."""


class SpecError(DagfoundryError):
    """A problem in a YAML spec, located by file, line, column and key path.

    :param path: the spec file, as the user would type it
    :param line: 1-based line, or 0 when the whole file is concerned
    :param column: 1-based column, or 0 when unknown
    :param key: dotted key path (``tables[2].primary_key``), empty for the whole document
    :param message: what is wrong and what is allowed
    """

    def __init__(self, path: str, line: int, column: int, key: str, message: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.key = key
        self.message = message
        super().__init__(self.render())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SpecError) and self.render() == other.render()

    def __hash__(self) -> int:
        return hash(self.render())

    def render(self) -> str:
        """Return the compiler-style one-line form ``path:line:col: key: message``."""
        where = f"{self.path}:{self.line}:{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class SpecErrors(DagfoundryError):
    """Several spec errors reported at once (one broken spec never hides another)."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.path, e.line, e.column, e.key))
        lines = "\n".join(e.render() for e in self.errors)
        super().__init__(f"{len(self.errors)} spec error(s):\n{lines}")


class LakePublishError(DagfoundryError):
    """A lake directory could not be published atomically; the live data is untouched."""


class DataQualityError(DagfoundryError):
    """A data-quality check failed; the batch was not published."""


class TrainingDataError(DagfoundryError):
    """Training data cannot be built, failed its checks or drifted past a hard bound (a data problem)."""


class TrainerError(DagfoundryError):
    """A trainer entrypoint cannot be loaded, raised, or returned something that cannot predict."""


class PromotionError(DagfoundryError):
    """A promotion or rollback cannot go on: the registry changed under it, or there is nothing to restore."""
