"""Factory of the ``retraining`` kind.

Tasks: ``build_training_set`` -> ``validate_training_set`` (GX; a failure stops the run) ->
``check_drift`` (short-circuits the rest when ``retrain_when: drift`` and nothing drifted) ->
``train`` (fit and score the holdout) -> ``register_model`` (MLflow run, model version with
the contract's tags, alias ``challenger``; emits ``models.<model>.challenger``).

Data problems (checks, drift beyond the hard bound, missing columns) and trainer errors fail
the task without retries: retrying cannot fix them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, Param, task

from dagfoundry.assets import model_asset_name
from dagfoundry.factories.dag_header import new_dag
from dagfoundry.registry import register_kind
from dagfoundry.specs.retraining import RetrainingSpec

if TYPE_CHECKING:
    from dagfoundry.specs.loading import LoadedSpec

_PARAM_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def trainer_param_form(spec: RetrainingSpec) -> dict[str, Param]:
    """Return one typed Param ``hp_<name>`` per trainer parameter (empty = the spec's value)."""
    return {
        f"hp_{name}": Param(
            None,
            type=[_PARAM_TYPES[type(value)], "null"] if type(value) is not float else ["number", "null"],
            description=f"Trainer parameter {name!r} for this run (empty = the spec's {value!r}).",
        )
        for name, value in sorted(spec.trainer.params.items())
    }


@register_kind("retraining", RetrainingSpec)
def build_retraining(loaded: LoadedSpec) -> Any:
    """Build the retraining DAG of one spec."""
    spec: RetrainingSpec = loaded.spec  # type: ignore[assignment]
    asset = Asset(model_asset_name(spec.registered_model, "challenger"))

    def folder_of(context: dict[str, Any]) -> Any:
        from dagfoundry.settings import lake_root
        from dagfoundry.training.steps import run_folder

        return run_folder(lake_root(), spec.name, context["run_id"])

    def data_problem(exc: Exception) -> Exception:
        from airflow.sdk.exceptions import AirflowFailException

        return AirflowFailException(str(exc))

    with new_dag(loaded, data_intervals=True, outlets=[asset.name], extra_params=trainer_param_form(spec)) as dag:

        @task(task_id="build_training_set")
        def build_training_set(**context: Any) -> dict:
            from dagfoundry.errors import TrainingDataError
            from dagfoundry.settings import lake_root
            from dagfoundry.training.steps import build_step, cutoff_of_run

            cutoff = cutoff_of_run(context.get("data_interval_end"), context["dag_run"].run_after)
            try:
                return build_step(spec, lake_root(), cutoff, folder_of(context))
            except TrainingDataError as exc:
                raise data_problem(exc) from exc

        @task(task_id="validate_training_set")
        def validate_training_set(_built: Any, **context: Any) -> dict:
            from dagfoundry.errors import TrainingDataError
            from dagfoundry.models.tracking import resolve_location
            from dagfoundry.training.steps import validate_step

            try:
                return validate_step(spec, folder_of(context), resolve_location(spec.mlflow_conn_id),
                                     f"{spec.name}/{context['run_id']}")
            except TrainingDataError as exc:
                raise data_problem(exc) from exc

        @task.short_circuit(task_id="check_drift", ignore_downstream_trigger_rules=True)
        def check_drift(_validated: Any, params: dict | None = None, **context: Any) -> bool:
            import logging

            from dagfoundry.errors import TrainingDataError
            from dagfoundry.models.tracking import resolve_location
            from dagfoundry.training.steps import drift_step

            policy = (params or {}).get("retrain_when") or spec.drift.retrain_when
            try:
                report = drift_step(spec, folder_of(context), resolve_location(spec.mlflow_conn_id), policy)
            except TrainingDataError as exc:
                raise data_problem(exc) from exc
            logging.getLogger(__name__).info("drift: %s; per feature: %s", report["reason"],
                                             report.get("features", {}))
            return bool(report["train"])

        @task(task_id="train")
        def train(params: dict | None = None, **context: Any) -> dict:
            from dagfoundry.errors import TrainerError
            from dagfoundry.training.steps import train_step, trainer_params

            try:
                return train_step(spec, folder_of(context), trainer_params(spec, params or {}))
            except TrainerError as exc:
                raise data_problem(exc) from exc

        @task(task_id="register_model", outlets=[asset])
        def register_model(_metrics: Any, params: dict | None = None, outlet_events: Any = None,
                           **context: Any) -> dict:
            from dagfoundry.models.tracking import resolve_location
            from dagfoundry.training.steps import register_step, trainer_params

            registered = register_step(
                spec, folder_of(context), resolve_location(spec.mlflow_conn_id),
                f"{spec.name}/{context['run_id']}", trainer_params(spec, params or {}),
            )
            if outlet_events is not None:
                outlet_events[asset].extra = registered
            return registered

        drift_ok = check_drift(validate_training_set(build_training_set()))
        trained = train()
        drift_ok >> trained
        register_model(trained)
    return dag
