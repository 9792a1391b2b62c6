"""The gates as pure functions: floors, improvement in each direction, segments, budgets, first model."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagfoundry.promotion.gates import apply_gates, comparison_markdown, failed
from dagfoundry.specs.loading import SpecLoader

SPEC = """\
kind: model_promotion
name: gates
registered_model: m
metrics:
  roc_auc: {floor: 0.7, min_improvement: 0.01}
  log_loss: {floor: 0.6, min_improvement: null, min_relative_improvement: 0.05}
segments:
  - {column: region, metric: roc_auc, max_regression: 0.02, min_rows: 10}
budgets: {max_model_bytes: 1000, max_latency_ms_per_1000_rows: 5}
"""


@pytest.fixture
def spec(tmp_path: Path):
    (tmp_path / "s.yaml").write_text(SPEC)
    return SpecLoader(tmp_path, environ={}).load_file(tmp_path / "s.yaml").spec


def side(version: str, auc: float, loss: float, south_auc: float = 0.8, size: int = 500, latency: float = 1.0):
    return {"version": version, "metrics": {"roc_auc": auc, "log_loss": loss},
            "segments": {"region": {"north": {"rows": 100, "roc_auc": auc}, "south": {"rows": 40, "roc_auc": south_auc},
                                    "tiny": {"rows": 3, "roc_auc": 0.1}}},
            "model_bytes": size, "latency_ms_per_1000_rows": latency}


def evaluation(challenger, champion=None, problem=None):
    holdout = {"digest": "sha256:x", "rows": 143, "source": "challenger_run"}
    if problem:
        holdout["problem"] = problem
    return {"challenger": challenger, "champion": champion, "holdout": holdout}


def failing(spec, ev) -> list[str]:
    return [g.gate for g in failed(apply_gates(spec, ev))]


def test_a_better_challenger_passes_every_gate(spec):
    assert failing(spec, evaluation(side("2", 0.85, 0.40), side("1", 0.83, 0.45))) == []


def test_improvement_is_judged_in_each_metrics_direction(spec):
    # roc_auc up by less than 0.01; log_loss (lower is better) worse, so its relative gate fails
    assert failing(spec, evaluation(side("2", 0.835, 0.46), side("1", 0.83, 0.45))) == [
        "relative_improvement:log_loss", "improvement:roc_auc"]


def test_floors_hold_in_each_direction(spec):
    assert failing(spec, evaluation(side("2", 0.65, 0.65))) == ["floor:log_loss", "floor:roc_auc"]


def test_first_model_is_judged_on_floors_and_budgets_only(spec):
    results = apply_gates(spec, evaluation(side("1", 0.71, 0.5, south_auc=0.1)))
    assert [r.gate for r in results] == ["holdout", "floor:log_loss", "floor:roc_auc", "budget:model_bytes",
                                         "budget:latency_ms_per_1000_rows"]
    assert failed(results) == []


def test_a_segment_regressing_beyond_its_bound_fails_and_small_segments_are_not_judged(spec):
    ev = evaluation(side("2", 0.86, 0.40, south_auc=0.75), side("1", 0.83, 0.45, south_auc=0.80))
    assert failing(spec, ev) == ["segment:region=south:roc_auc"]
    assert not any("tiny" in g.gate for g in apply_gates(spec, ev))


def test_budgets_fail_a_large_or_slow_model(spec):
    ev = evaluation(side("2", 0.86, 0.40, size=2000, latency=9.0), side("1", 0.83, 0.45))
    assert failing(spec, ev) == ["budget:model_bytes", "budget:latency_ms_per_1000_rows"]


def test_a_holdout_problem_refuses_before_any_metric(spec):
    results = apply_gates(spec, evaluation(side("2", 0.9, 0.3), None, problem="holdout digest mismatch: ..."))
    assert [(r.gate, r.passed) for r in results] == [("holdout", False)]


def test_comparison_table_lists_metrics_and_gates(spec):
    ev = evaluation(side("2", 0.86, 0.40), side("1", 0.83, 0.45))
    table = comparison_markdown(ev, apply_gates(spec, ev))
    assert "| roc_auc | 0.86 | 0.83 |" in table and "| `floor:roc_auc` | pass |" in table


def test_chart_draws_metrics_segments_and_thresholds(spec, tmp_path):
    from dagfoundry.promotion.chart import draw_comparison

    ev = evaluation(side("2", 0.86, 0.40, south_auc=0.75), side("1", 0.83, 0.45))
    path = draw_comparison(ev, apply_gates(spec, ev), tmp_path / "c.png", "m v2: refused")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 10_000


def test_the_triggering_event_of_this_model_names_the_challenger(spec):
    from dagfoundry.promotion.steps import announced_challenger

    events = [{"model": "m", "version": "3", "holdout_digest": "sha256:a"}, {"model": "other", "version": "9"},
              {"model": "m", "version": "4", "holdout_digest": "sha256:b"}]
    assert announced_challenger(spec, events) == ("4", "sha256:b")
    assert announced_challenger(spec, [{"model": "other", "version": "9"}]) == (None, None)


def test_audit_records_carry_each_gates_result_compactly(spec):
    import json

    from dagfoundry.promotion.audit import GATES_BUDGET, MORE_PASSED, compact_gates

    ev = evaluation(side("2", 0.8612345678, 0.40, south_auc=0.75), side("1", 0.83, 0.45))
    results = [g.as_dict() for g in apply_gates(spec, ev)]
    compact = compact_gates(results)
    assert sorted(compact) == sorted(r["gate"] for r in results)  # every gate
    assert compact["segment:region=south:roc_auc"] == [False, 0.75, 0.78]
    assert compact["floor:roc_auc"] == [True, 0.861235, 0.7]
    assert compact["holdout"] == [True, None, None]

    # Many segments: failed gates are all kept, passed ones counted beyond the budget.
    many = [{"gate": f"segment:store={i}:roc_auc", "passed": i % 50 != 7, "value": 0.8, "threshold": 0.78,
             "detail": "..."} for i in range(500)]
    squeezed = compact_gates(many)
    assert len(json.dumps(squeezed)) <= GATES_BUDGET
    assert [g for g, r in squeezed.items() if g != MORE_PASSED and not r[0]] == [
        f"segment:store={i}:roc_auc" for i in range(500) if i % 50 == 7]
    assert squeezed[MORE_PASSED] + len(squeezed) - 1 == 500


def test_a_history_entry_too_long_for_a_registered_model_tag_changes_nothing():
    from dagfoundry.errors import PromotionError
    from dagfoundry.promotion.audit import begin_switch

    class Client:
        written: list = []

        def set_registered_model_tag(self, *args):
            self.written.append(args)

    with pytest.raises(PromotionError, match=r"m: the history entry has \d+ characters, more than a registered"):
        begin_switch(Client(), "m", {"dag_run": "x" * 5000})
    assert Client.written == []
