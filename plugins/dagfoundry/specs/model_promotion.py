"""Spec of the ``model_promotion`` kind: champion vs challenger on one holdout, gates, approval, switch.

The gates are written per metric (``metrics: {roc_auc: {floor: 0.7, min_improvement: 0.005}}``);
which direction is better comes from :mod:`dagfoundry.models.scoring` unless the spec says so.
"""

from __future__ import annotations

import difflib
from datetime import timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from dagfoundry.specs.base import DagSpec, ParamDeclaration, RuleViolation, StrictModel
from dagfoundry.specs.types import ConnId, Duration, Identifier

LakePath = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_./=\-]+$")]


class HoldoutSpec(StrictModel):
    """The rows both models are judged on.

    By default the challenger's training run's holdout (``datasets/holdout.parquet``), checked
    against the digest the run recorded; or a lake table (Parquet folder) or a DuckDB query.
    """

    source: Literal["challenger_run", "table", "sql"] = Field(
        default="challenger_run", description="challenger_run (default), table or sql."
    )
    table: LakePath | None = Field(default=None, description="Parquet table folder under the lake root.")
    sql: str | None = Field(default=None, description="DuckDB query; `{lake}` is replaced with the lake root.")

    @model_validator(mode="after")
    def _source_has_its_key(self) -> HoldoutSpec:
        if self.source == "table" and not self.table:
            raise RuleViolation(("table",), "source: table needs `table`")
        if self.source == "sql" and not self.sql:
            raise RuleViolation(("sql",), "source: sql needs `sql`")
        if self.source != "table" and self.table:
            raise RuleViolation(("table",), f"`table` is only read with source: table (source is {self.source})")
        if self.source != "sql" and self.sql:
            raise RuleViolation(("sql",), f"`sql` is only read with source: sql (source is {self.source})")
        return self


class MetricGateSpec(StrictModel):
    """Gates on one holdout metric: an absolute floor and a minimum improvement over the champion."""

    floor: float | None = Field(
        default=None,
        description="Worst acceptable value (a minimum when higher is better, a maximum when lower is).",
    )
    min_improvement: float | None = Field(
        default=0.0, description="Least absolute improvement over the champion (0 = not worse); null = no gate."
    )
    min_relative_improvement: float | None = Field(
        default=None, description="Least improvement relative to the champion's value (0.01 = 1 %); null = no gate."
    )
    direction: Literal["higher", "lower"] | None = Field(
        default=None, description="Which is better; default the metric's own (roc_auc higher, log_loss lower)."
    )


class SegmentGateSpec(StrictModel):
    """No segment (value of a column) may regress beyond a bound against the champion."""

    column: Identifier = Field(description="A column of the holdout, e.g. country.")
    metric: str = Field(description="One of the spec's metrics.")
    max_regression: float = Field(default=0.0, ge=0, description="Largest allowed worsening in any segment.")
    min_rows: int = Field(default=30, ge=1, description="Segments with fewer holdout rows are not judged.")


class BudgetSpec(StrictModel):
    """Resource budgets of the challenger."""

    max_model_bytes: int | None = Field(default=None, ge=1, description="Size of the logged model's files.")
    max_latency_ms_per_1000_rows: float | None = Field(
        default=None, gt=0, description="Prediction time per 1,000 holdout rows (best of 3)."
    )


class ApprovalSpec(StrictModel):
    """Who decides after the gates pass: nobody (auto) or a person in the Airflow UI (required)."""

    mode: Literal["auto", "required"] = "auto"
    timeout: Duration = Field(default=timedelta(days=1), description="Without an answer by then: rejected.")


class AliasesSpec(StrictModel):
    """The registered-model aliases the kind reads and moves."""

    champion: Identifier = "champion"
    challenger: Identifier = "challenger"
    previous_champion: Identifier = "previous_champion"

    @model_validator(mode="after")
    def _distinct(self) -> AliasesSpec:
        names = [self.champion, self.challenger, self.previous_champion]
        if len(set(names)) != 3:
            raise RuleViolation((), f"the three aliases must differ, found {names}")
        return self


class ModelPromotionSpec(DagSpec):
    """Promote a registered model's challenger to champion when it beats the champion on one holdout."""

    declared_params: ClassVar[dict[str, ParamDeclaration]] = {
        "dry_run": ParamDeclaration(False, "boolean", "Evaluate and report; change nothing in the registry."),
        "rollback": ParamDeclaration(
            False, "boolean", "Restore previous_champion as champion (check-and-set, audited); no evaluation."
        ),
    }
    max_active_runs_limit: ClassVar[int] = 1
    max_active_runs_reason: ClassVar[str] = "one promotion of a model at a time"

    kind: Literal["model_promotion"]
    registered_model: Identifier = Field(description="The MLflow registered model name.")
    holdout: HoldoutSpec = Field(default_factory=HoldoutSpec)
    metrics: dict[str, MetricGateSpec] = Field(min_length=1, description="Gates per holdout metric.")
    segments: tuple[SegmentGateSpec, ...] = Field(default=(), description="Per-segment regression bounds.")
    budgets: BudgetSpec = Field(default_factory=BudgetSpec)
    approval: ApprovalSpec = Field(default_factory=ApprovalSpec)
    aliases: AliasesSpec = Field(default_factory=AliasesSpec)
    mlflow_conn_id: ConnId | None = Field(default=None, description="Connection of the MLflow server; default local.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelPromotionSpec:
        from dagfoundry.models.scoring import METRICS

        tasks = set()
        for name, gate in self.metrics.items():
            if name not in METRICS:
                close = difflib.get_close_matches(name, METRICS, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(METRICS))}"
                raise RuleViolation(("metrics", name), f"unknown metric {name!r}{hint}")
            tasks.add(METRICS[name][0])
            if gate.direction is not None and gate.direction != METRICS[name][1]:
                raise RuleViolation(("metrics", name, "direction"),
                                    f"{name} is better when {METRICS[name][1]}, not {gate.direction}")
        if len(tasks) > 1:
            raise RuleViolation(("metrics",), f"metrics mix tasks {sorted(tasks)}: a model has one task")
        for index, segment in enumerate(self.segments):
            if segment.metric not in self.metrics:
                raise RuleViolation(("segments", index, "metric"),
                                    f"segment metric {segment.metric!r} is not one of metrics: {sorted(self.metrics)}")
        return self

    @property
    def task(self) -> str:
        """Return the model task the metrics belong to."""
        from dagfoundry.models.scoring import METRICS

        return METRICS[sorted(self.metrics)[0]][0]

    def direction_of(self, metric: str) -> Literal["higher", "lower"]:
        """Return which direction of ``metric`` is better."""
        from dagfoundry.models.scoring import metric_direction

        return self.metrics[metric].direction or metric_direction(metric)

    def produced_assets(self) -> list[str]:
        """Return the champion Asset this DAG emits when it promotes or rolls back."""
        from dagfoundry.assets import model_asset_name

        return [model_asset_name(self.registered_model, self.aliases.champion)]
