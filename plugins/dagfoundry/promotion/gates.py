"""The promotion gates: pure functions from an evaluation and a spec to pass/fail results.

An evaluation (see :mod:`dagfoundry.promotion.evaluation`) holds both models' metrics on the
same holdout; the gates compare them. With no champion (the first model of a name) only the
absolute gates apply: the holdout check, the floors and the budgets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagfoundry.specs.model_promotion import ModelPromotionSpec


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome.

    :param gate: e.g. ``floor:roc_auc``, ``improvement:roc_auc``, ``segment:country=DE:roc_auc``
    :param passed: whether the challenger passed it
    :param value: the challenger's figure the gate judged (None when there is none)
    :param threshold: the bound it was held to (None when there is none)
    :param detail: one line a person reads in the task log and on the tags
    """

    gate: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe values."""
        return asdict(self)


def better_by(value: float, reference: float, direction: str) -> float:
    """Return how much ``value`` improves on ``reference`` (negative when worse)."""
    return value - reference if direction == "higher" else reference - value


def apply_gates(spec: ModelPromotionSpec, evaluation: dict[str, Any]) -> list[GateResult]:
    """Return every gate's result for one evaluation, in a stable order."""
    results: list[GateResult] = []
    problem = evaluation["holdout"].get("problem")
    results.append(GateResult("holdout", problem is None, None, None,
                              problem or f"both models scored on holdout {evaluation['holdout']['digest']}"))
    if problem is not None:
        return results
    challenger, champion = evaluation["challenger"], evaluation.get("champion")
    for metric in sorted(spec.metrics):
        results.extend(_metric_gates(spec, metric, challenger["metrics"][metric],
                                     champion["metrics"][metric] if champion else None))
    if champion:
        for segment in spec.segments:
            results.extend(_segment_gates(spec, segment.column, segment.metric, segment.max_regression,
                                          segment.min_rows, challenger, champion))
    results.extend(_budget_gates(spec, challenger))
    return results


def failed(results: list[GateResult]) -> list[GateResult]:
    """Return the gates that did not pass."""
    return [result for result in results if not result.passed]


def _metric_gates(spec: ModelPromotionSpec, metric: str, value: float, reference: float | None) -> list[GateResult]:
    gate = spec.metrics[metric]
    direction = spec.direction_of(metric)
    results = []
    if gate.floor is not None:
        ok = value >= gate.floor if direction == "higher" else value <= gate.floor
        word = "at least" if direction == "higher" else "at most"
        results.append(GateResult(f"floor:{metric}", ok, value, gate.floor,
                                  f"{metric} {value:.6g} must be {word} {gate.floor:.6g}"))
    if reference is None:
        return results
    delta = better_by(value, reference, direction)
    if gate.min_improvement is not None:
        ok = delta >= gate.min_improvement
        results.append(GateResult(
            f"improvement:{metric}", ok, value, _bound(reference, gate.min_improvement, direction),
            f"{metric} {value:.6g} vs champion {reference:.6g}: improvement {delta:+.6g}, "
            f"needs at least {gate.min_improvement:+.6g}",
        ))
    if gate.min_relative_improvement is not None:
        relative = delta / abs(reference) if reference else (math.inf if delta > 0 else 0.0 if delta == 0 else -math.inf)
        ok = relative >= gate.min_relative_improvement
        results.append(GateResult(
            f"relative_improvement:{metric}", ok, value,
            _bound(reference, gate.min_relative_improvement * abs(reference), direction),
            f"{metric} {value:.6g} vs champion {reference:.6g}: relative improvement {relative:+.4%}, "
            f"needs at least {gate.min_relative_improvement:+.4%}",
        ))
    return results


def _bound(reference: float, improvement: float, direction: str) -> float:
    """Return the value the challenger must reach: the champion's plus the required improvement."""
    return reference + improvement if direction == "higher" else reference - improvement


def _segment_gates(spec: ModelPromotionSpec, column: str, metric: str, max_regression: float, min_rows: int,
                   challenger: dict[str, Any], champion: dict[str, Any]) -> list[GateResult]:
    direction = spec.direction_of(metric)
    mine = challenger.get("segments", {}).get(column, {})
    theirs = champion.get("segments", {}).get(column, {})
    results = []
    for value in sorted(mine):
        rows = mine[value]["rows"]
        if rows < min_rows or metric not in mine[value] or metric not in theirs.get(value, {}):
            continue
        ours, reference = mine[value][metric], theirs[value][metric]
        delta = better_by(ours, reference, direction)
        results.append(GateResult(
            f"segment:{column}={value}:{metric}", delta >= -max_regression, ours,
            _bound(reference, -max_regression, direction),
            f"{column}={value} ({rows} rows): {metric} {ours:.6g} vs champion {reference:.6g} "
            f"(change {delta:+.6g}, may worsen by at most {max_regression:.6g})",
        ))
    return results


def _budget_gates(spec: ModelPromotionSpec, challenger: dict[str, Any]) -> list[GateResult]:
    budgets = spec.budgets
    results = []
    if budgets.max_model_bytes is not None:
        size = challenger["model_bytes"]
        results.append(GateResult("budget:model_bytes", size <= budgets.max_model_bytes, size,
                                  budgets.max_model_bytes,
                                  f"model size {size} bytes, budget {budgets.max_model_bytes}"))
    if budgets.max_latency_ms_per_1000_rows is not None:
        latency = challenger["latency_ms_per_1000_rows"]
        results.append(GateResult(
            "budget:latency_ms_per_1000_rows", latency <= budgets.max_latency_ms_per_1000_rows, latency,
            budgets.max_latency_ms_per_1000_rows,
            f"prediction latency {latency:.4g} ms per 1,000 rows, budget {budgets.max_latency_ms_per_1000_rows:.4g}",
        ))
    return results


def comparison_markdown(evaluation: dict[str, Any], results: list[GateResult]) -> str:
    """Return the comparison as a Markdown table (the approval request and the task log show it)."""
    challenger, champion = evaluation["challenger"], evaluation.get("champion")
    lines = [
        f"| metric | challenger v{challenger['version']} | "
        + (f"champion v{champion['version']} |" if champion else "champion (none) |"),
        "|---|---|---|",
    ]
    for metric in sorted(challenger["metrics"]):
        theirs = f"{champion['metrics'][metric]:.6g}" if champion else "-"
        lines.append(f"| {metric} | {challenger['metrics'][metric]:.6g} | {theirs} |")
    lines += ["", "| gate | result | detail |", "|---|---|---|"]
    lines += [f"| `{r.gate}` | {'pass' if r.passed else '**FAIL**'} | {r.detail} |" for r in results]
    return "\n".join(lines)
