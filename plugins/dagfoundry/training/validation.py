"""Data checks of a training set with Great Expectations 1.x (ephemeral context, pandas data source).

The spec's expectations were checked against the allow-list at lint time; here each becomes
the GX class of the same name (``expect_column_values_to_not_be_null`` ->
``ExpectColumnValuesToNotBeNull``) and runs in one ``ValidationDefinition`` over the frame.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from dagfoundry.errors import TrainingDataError

if TYPE_CHECKING:
    import pandas as pd


def expectation_class_name(name: str) -> str:
    """Return the GX class name of a snake-case expectation name."""
    return "".join(part.capitalize() for part in name.split("_"))


def validate_frame(frame: pd.DataFrame, checks: tuple[dict[str, dict[str, Any]], ...], suite_name: str) -> dict:
    """Run ``checks`` on ``frame`` with GX and return the JSON report (``success``, ``results``).

    The report's ``failed`` lists each failing expectation with its arguments and observed value.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas(f"{suite_name}_source")
        .add_dataframe_asset("training_set")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for check in checks:
        ((name, args),) = check.items()
        suite.add_expectation(getattr(gxe, expectation_class_name(name))(**(args or {})))
    definition = context.validation_definitions.add(gx.ValidationDefinition(data=batch, suite=suite, name=suite_name))
    result = definition.run(batch_parameters={"dataframe": frame})
    report = result.describe_dict() if hasattr(result, "describe_dict") else result.to_json_dict()
    failed = [
        {
            "expectation": config.type,
            "kwargs": {k: v for k, v in config.kwargs.items() if k != "batch_id"},
            "observed": r.result.get("observed_value", r.result.get("unexpected_count")),
        }
        for r in result.results
        if not r.success and (config := r.expectation_config) is not None
    ]
    return {"success": bool(result.success), "evaluated": len(result.results), "failed": failed, "gx": report}


def require_valid(report: dict) -> None:
    """Raise when a validation report failed, naming each failing expectation."""
    if report["success"]:
        return
    lines = [f"{f['expectation']}({_args(f['kwargs'])}): observed {f['observed']!r}" for f in report["failed"]]
    raise TrainingDataError(
        f"{len(lines)} of {report['evaluated']} data check(s) failed; nothing was trained or registered: "
        + "; ".join(lines)
    )


def _args(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
