from __future__ import annotations

import pytest

from dagfoundry.specs.cron import validate_schedule_expression


@pytest.mark.parametrize("expression", ["0 3 * * *", "*/15 * * * 1-5", "0 0 1 jan,jul *", "@daily", "5 4 * * sun"])
def test_valid_expressions_pass(expression):
    validate_schedule_expression(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 25 * * *", "hour 25 is out of range 0-23"),
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("0 5-2 * * *", "range '5-2' goes backwards"),
        ("0 3 * *", "expected 5 fields"),
        ("@sometimes", "not a known preset"),
    ],
)
def test_invalid_expressions_name_the_field(expression, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        validate_schedule_expression(expression)
