"""The comparison chart: challenger vs champion per metric and per segment, gate thresholds drawn in.

One PNG, one panel per metric (overall) and one per segment gate; bars for the two models,
dashed lines for the floor (red) and the value the challenger had to reach (orange), and the
panel title green when its gates passed, red when one failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagfoundry.promotion.gates import GateResult

#: a threshold line: value, line style, colour, legend label, and the bars it spans (None: all)
Line = tuple[float, str, str, str, tuple[int, int] | None]


def draw_comparison(evaluation: dict[str, Any], gates: list[GateResult], path: Path, title: str) -> Path:
    """Draw the chart of one evaluation into ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(evaluation, gates)
    columns = min(3, len(panels)) or 1
    rows = (len(panels) + columns - 1) // columns or 1
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        names = [name for name, _ in panel["bars"]]
        values = [value for _, value in panel["bars"]]
        colours = ["#4c72b0" if name.startswith("challenger") else "#999999" for name in names]
        axis.bar(range(len(values)), values, color=colours)
        axis.set_xticks(range(len(values)), names, rotation=20, fontsize=8)
        for value, style, colour, label, span in panel["lines"]:
            if span is None:
                axis.axhline(value, linestyle=style, color=colour, linewidth=1.2, label=label)
            else:  # a threshold of one segment: drawn over that segment's two bars only
                axis.hlines(value, span[0] - 0.45, span[1] + 0.45, linestyles=style, colors=colour, linewidth=1.5,
                            label=label if span[0] == 0 else None)
        if panel["lines"]:
            axis.legend(fontsize=7, loc="lower right")
        axis.set_title(panel["title"], fontsize=9, color="#2a7a2a" if panel["passed"] else "#b22222")
        for index, value in enumerate(values):
            axis.annotate(f"{value:.4g}", (index, value), ha="center", va="bottom", fontsize=7)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _panels(evaluation: dict[str, Any], gates: list[GateResult]) -> list[dict[str, Any]]:
    by_name = {gate.gate: gate for gate in gates}
    challenger, champion = evaluation["challenger"], evaluation.get("champion")
    panels = []
    for metric in sorted(challenger["metrics"]):
        bars = [(f"challenger v{challenger['version']}", challenger["metrics"][metric])]
        if champion:
            bars.append((f"champion v{champion['version']}", champion["metrics"][metric]))
        lines: list[Line] = []
        mine = [g for key, g in by_name.items() if key.split(":", 1)[-1] == metric and ":" in key]
        for gate in mine:
            if gate.threshold is None:
                continue
            if gate.gate.startswith("floor:"):
                lines.append((gate.threshold, "--", "#b22222", "floor", None))
            else:
                lines.append((gate.threshold, ":", "#dd8452", gate.gate.split(":")[0].replace("_", " "), None))
        panels.append({"title": metric, "bars": bars, "lines": lines, "passed": all(g.passed for g in mine)})
    segment_gates = [g for g in gates if g.gate.startswith("segment:")]
    grouped: dict[tuple[str, str], list[GateResult]] = {}
    for gate in segment_gates:
        column, _, metric = _segment_of(gate)
        grouped.setdefault((column, metric), []).append(gate)
    for (column, metric), members in sorted(grouped.items()):
        bars, spans = [], []
        for gate in members:
            value = _segment_of(gate)[1]
            if gate.threshold is not None:
                spans.append((gate.threshold, "-", "#dd8452", "worst allowed", (len(bars), len(bars) + 1)))
            bars.append((f"challenger {value}", float(gate.value or 0.0)))
            reference = (champion or {}).get("segments", {}).get(column, {}).get(value, {}).get(metric)
            bars.append((f"champion {value}", float(reference or 0.0)))
        panels.append({"title": f"{metric} by {column}", "bars": bars, "lines": spans,
                       "passed": all(g.passed for g in members)})
    return panels


def _segment_of(gate: GateResult) -> tuple[str, str, str]:
    """Return (column, value, metric) of a ``segment:<column>=<value>:<metric>`` gate (values may hold ':')."""
    where, _, metric = gate.gate.removeprefix("segment:").rpartition(":")
    column, _, value = where.partition("=")
    return column, value, metric
