"""Validate cron expressions and presets with messages that name the faulty field."""

from __future__ import annotations

PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")

_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    ),
    ("day of week", 0, 7, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}),
)


def validate_schedule_expression(expression: str) -> None:
    """Raise ``ValueError`` unless ``expression`` is a preset or a valid 5-field cron expression."""
    text = expression.strip()
    if text.startswith("@"):
        if text not in PRESETS:
            raise ValueError(f"{expression!r} is not a known preset; use one of {', '.join(PRESETS)} or a cron expression")
        return
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a valid cron expression: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), found {len(fields)}"
        )
    for value, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        problem = _field_problem(value, low, high, names)
        if problem:
            raise ValueError(f"{expression!r} is not a valid cron expression ({name} {problem})")


def _field_problem(field: str, low: int, high: int, names: dict[str, int]) -> str | None:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"step {step!r} must be a positive number"
        if base == "*":
            continue
        bounds = base.split("-")
        if len(bounds) > 2 or not all(bounds):
            return f"{part!r} is not a number, a range or '*'"
        numbers = []
        for bound in bounds:
            number = names.get(bound.lower()) if not bound.isdigit() else int(bound)
            if number is None:
                return f"{bound!r} is not a number"
            if not low <= number <= high:
                return f"{number} is out of range {low}-{high}"
            numbers.append(number)
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return f"range {part!r} goes backwards"
    return None
