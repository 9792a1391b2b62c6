"""Spec of the ``retraining`` kind: validated, drift-aware, reproducible training registered in MLflow.

Data checks are Great Expectations 1.x expectations written as ``{expectation_name: {arg: value}}``.
They are checked here, at lint time, against :data:`EXPECTATIONS` (a static allow-list of
expectation classes and their argument names), so parsing never imports great_expectations;
a unit test compares the allow-list with the installed GX classes so it cannot drift.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dagfoundry.specs.base import DagSpec, ParamDeclaration, RuleViolation, StrictModel
from dagfoundry.specs.engine import ENGINE_DESCRIPTION, DuckDBSpec, Engine
from dagfoundry.specs.spark import SparkSpec
from dagfoundry.specs.types import ConnId, Identifier

#: GX arguments every column expectation accepts besides its own.
_COMMON = frozenset({"mostly", "row_condition", "condition_parser", "description", "severity"})
_BETWEEN = frozenset({"min_value", "max_value", "strict_min", "strict_max"})

#: expectation name -> (required arguments, optional arguments); mirrors great_expectations 1.x.
EXPECTATIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "expect_column_to_exist": (frozenset({"column"}), frozenset({"column_index", "description", "severity"})),
    "expect_column_values_to_not_be_null": (frozenset({"column"}), _COMMON),
    "expect_column_values_to_be_between": (frozenset({"column"}), _COMMON | _BETWEEN),
    "expect_column_values_to_be_in_set": (frozenset({"column", "value_set"}), _COMMON),
    "expect_column_values_to_be_unique": (frozenset({"column"}), _COMMON),
    "expect_column_distinct_values_to_be_in_set": (frozenset({"column", "value_set"}), _COMMON - {"mostly"}),
    "expect_column_mean_to_be_between": (frozenset({"column"}), (_COMMON - {"mostly"}) | _BETWEEN),
    "expect_table_row_count_to_be_between": (
        frozenset(),
        (_COMMON - {"mostly"}) | _BETWEEN,
    ),
}

LakePath = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_./=\-]+$")]
Entrypoint = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")]
TrainerParam = str | int | float | bool


class LabelSourceSpec(StrictModel):
    """Where labels come from: a lake table (Parquet folder) or a DuckDB query over lake tables."""

    table: LakePath | None = Field(default=None, description="Parquet table folder under the lake root.")
    sql: str | None = Field(
        default=None,
        description="DuckDB query; `{lake}` is replaced with the lake root (read_parquet('{lake}/labels/*.parquet')).",
    )
    entity_keys: tuple[Identifier, ...] = Field(min_length=1, description="Keys joining labels to feature views.")
    label_time: Identifier = Field(description="When the label was observed (UTC).")
    label_column: Identifier = Field(description="The target column.")
    features: tuple[Identifier, ...] = Field(
        default=(), description="Feature columns already in the label table (no feature view needed)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> LabelSourceSpec:
        if (self.table is None) == (self.sql is None):
            raise RuleViolation((), "give exactly one of `table` or `sql`")
        return self


class FeatureViewRefSpec(StrictModel):
    """Features of one `feature_backfill` view, joined point in time to the labels."""

    view: Identifier = Field(description="The feature view name (its offline store is <lake>/features/<view>).")
    features: tuple[Identifier, ...] = Field(min_length=1, description="Feature columns to use.")


class TrainingDataSpec(StrictModel):
    """The training set: labels, feature views and the time window."""

    label_source: LabelSourceSpec
    feature_views: tuple[FeatureViewRefSpec, ...] = Field(default=())
    lag_days: int = Field(default=0, ge=0, le=365, description="Days between features' cutoff and label time.")
    window_days: int = Field(default=180, ge=2, le=3660, description="Labels of this many days before the run's cutoff.")


class SplitSpec(StrictModel):
    """Time-based split: train before the holdout, holdout = the last days of the window."""

    holdout_days: int = Field(default=28, ge=1, le=3660)
    seed: int = Field(default=42, description="Seed passed to the trainer and the drift sample.")


class DriftSpec(StrictModel):
    """Per-feature PSI and KS between the new training window and the champion's training data."""

    retrain_when: Literal["always", "drift"] = "always"
    psi_threshold: float = Field(default=0.2, gt=0, description="A feature drifts when its PSI is above this.")
    ks_threshold: float = Field(default=0.2, gt=0, le=1, description="... or its KS statistic is above this.")
    psi_hard_bound: float | None = Field(
        default=1.0, gt=0, description="PSI above this fails the run as a data problem; null disables."
    )
    bins: int = Field(default=10, ge=2, le=100, description="Quantile bins of the PSI.")


class TrainerSpec(StrictModel):
    """The function that fits the model: ``module:function(frame, label_column, params) -> model``."""

    entrypoint: Entrypoint
    task: Literal["binary_classification", "regression"] = "binary_classification"
    params: dict[str, TrainerParam] = Field(default_factory=dict, description="Defaults; overridable on trigger.")


class RetrainingSpec(DagSpec):
    """Retrain a model on schedule or when its features change, and register it in MLflow."""

    declared_params: ClassVar[dict[str, ParamDeclaration]] = {
        "retrain_when": ParamDeclaration(
            None, "string", "Override the drift policy for this run: always | drift (empty = the spec's).",
        ),
    }

    kind: Literal["retraining"]
    registered_model: Identifier = Field(description="The MLflow registered model name.")
    training: TrainingDataSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    checks: tuple[dict[str, dict[str, Any]], ...] = Field(
        default=(), description="Great Expectations expectations: `- expect_...: {arg: value}`."
    )
    drift: DriftSpec = Field(default_factory=DriftSpec)
    trainer: TrainerSpec
    metrics: tuple[str, ...] = Field(default=("roc_auc",), min_length=1, description="Holdout metrics to log.")
    mlflow_conn_id: ConnId | None = Field(default=None, description="Connection of the MLflow server; default local.")
    engine: Engine = Field(default="duckdb", description="Runs the point-in-time join: " + ENGINE_DESCRIPTION)
    duckdb: DuckDBSpec = Field(default_factory=DuckDBSpec, description="Bounds of the join on the embedded engine.")
    spark: SparkSpec = Field(default_factory=SparkSpec, description="How the join runs with engine: spark.")

    @field_validator("checks")
    @classmethod
    def _checks_are_known(cls, checks: tuple[dict[str, dict[str, Any]], ...]) -> tuple[dict[str, dict[str, Any]], ...]:
        for index, check in enumerate(checks):
            if len(check) != 1:
                raise RuleViolation((index,), "each check is one `expectation_name: {arguments}` mapping")
            ((name, args),) = check.items()
            if name not in EXPECTATIONS:
                close = difflib.get_close_matches(name, EXPECTATIONS, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(sorted(EXPECTATIONS))}"
                raise RuleViolation((index, name), f"unknown expectation {name!r}{hint}")
            required, optional = EXPECTATIONS[name]
            for arg in sorted(args or {}):
                if arg not in required | optional:
                    close = difflib.get_close_matches(arg, sorted(required | optional), n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(sorted(required | optional))}"
                    raise RuleViolation((index, name, arg), f"{name} has no argument {arg!r}{hint}")
            missing = sorted(required - set(args or {}))
            if missing:
                raise RuleViolation((index, name), f"{name} needs argument(s) {', '.join(missing)}")
        return checks

    @model_validator(mode="after")
    def _consistent(self) -> RetrainingSpec:
        from dagfoundry.models.scoring import METRICS

        if not self.training.feature_views and not self.training.label_source.features:
            raise RuleViolation(("training",), "name features: `feature_views` or `label_source.features`")
        for index, metric in enumerate(self.metrics):
            if metric not in METRICS:
                close = difflib.get_close_matches(metric, METRICS, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(METRICS))}"
                raise RuleViolation(("metrics", index), f"unknown metric {metric!r}{hint}")
            if METRICS[metric][0] != self.trainer.task:
                raise RuleViolation(("metrics", index), f"metric {metric!r} is for {METRICS[metric][0]}, not {self.trainer.task}")
        names = self.feature_columns
        if len(set(names)) != len(names):
            raise RuleViolation(("training",), f"feature names repeat across views: {sorted(names)}")
        if self.split.holdout_days >= self.training.window_days:
            raise RuleViolation(("split", "holdout_days"), "the holdout must be shorter than training.window_days")
        return self

    def produced_assets(self) -> list[str]:
        """Return the challenger Asset a run emits when it registers a model."""
        from dagfoundry.assets import model_asset_name

        return [model_asset_name(self.registered_model, "challenger")]

    @property
    def feature_columns(self) -> list[str]:
        """Return the model's input columns, in order: label-table features, then each view's."""
        return [*self.training.label_source.features, *(f for v in self.training.feature_views for f in v.features)]
