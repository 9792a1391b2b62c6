"""Factory of the ``model_promotion`` kind.

Tasks: ``evaluate`` (challenger and champion on one holdout, gates, chart; with ``rollback``
it only reads the Params) -> ``route`` (branch: ``promote``, ``request_approval``,
``rollback`` or nothing) -> [``request_approval`` (only with ``approval.mode: required``: Airflow's
``HITLOperator`` with the options Approve and Reject; a timeout answers Reject)] -> ``promote`` (check-and-set switch,
audit, emits ``models.<model>.champion``) | ``rollback`` (same lock and check, emits the same
Asset) -> ``record_outcome`` (runs always: records why a cleared challenger was not promoted).

A refused challenger is a successful run in which ``promote`` is skipped: refusing is the
kind doing its job. A champion that moved under the switch fails ``promote`` (no retries).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, task

from dagfoundry.assets import model_asset_name
from dagfoundry.factories.dag_header import new_dag
from dagfoundry.registry import register_kind
from dagfoundry.specs.model_promotion import ModelPromotionSpec

if TYPE_CHECKING:
    from dagfoundry.specs.loading import LoadedSpec

APPROVE, REJECT = "Approve", "Reject"


@register_kind("model_promotion", ModelPromotionSpec)
def build_model_promotion(loaded: LoadedSpec) -> Any:
    """Build the promotion DAG of one spec."""
    spec: ModelPromotionSpec = loaded.spec  # type: ignore[assignment]
    champion_asset = Asset(model_asset_name(spec.registered_model, spec.aliases.champion))
    challenger_asset = model_asset_name(spec.registered_model, spec.aliases.challenger)
    needs_approval = spec.approval.mode == "required"

    def fail(exc: Exception) -> Exception:
        from airflow.sdk.exceptions import AirflowFailException

        return AirflowFailException(str(exc))

    def dag_run_of(context: dict[str, Any]) -> str:
        return f"{spec.name}/{context['run_id']}"

    with new_dag(loaded, outlets=[champion_asset.name]) as dag:

        @task(task_id="evaluate", retries=0)
        def evaluate(params: dict | None = None, **context: Any) -> dict:
            from dagfoundry.errors import PromotionError
            from dagfoundry.models.tracking import resolve_location
            from dagfoundry.promotion.steps import evaluate_step, run_folder
            from dagfoundry.settings import lake_root

            params = params or {}
            if params.get("rollback"):
                # dry_run wins over rollback: a dry rollback only says what it would restore
                return {"rollback": True, "dry_run": bool(params.get("dry_run"))}
            events = context.get("triggering_asset_events") or {}
            extras = [dict(e.extra or {}) for name, found in _events_by_name(events).items()
                      if name == challenger_asset for e in found]
            try:
                return evaluate_step(spec, resolve_location(spec.mlflow_conn_id), lake_root(),
                                     run_folder(lake_root(), spec.name, context["run_id"]), dag_run_of(context),
                                     dry_run=bool(params.get("dry_run")), events=extras)
            except PromotionError as exc:
                raise fail(exc) from exc

        @task.branch(task_id="route")
        def route(decision: Any) -> list[str]:
            if decision.get("rollback"):
                return [] if decision["dry_run"] else ["rollback"]
            if not decision["passed"] or decision["dry_run"]:
                return []
            return ["request_approval" if needs_approval else "promote"]

        @task(task_id="promote", outlets=[champion_asset], retries=0)
        def promote(decision: Any, outlet_events: Any = None, **context: Any) -> dict:
            from dagfoundry.errors import PromotionError
            from dagfoundry.models.tracking import resolve_location
            from dagfoundry.promotion.steps import switch_step

            approved_by = "auto (gates passed)"
            if needs_approval:
                from airflow.sdk.exceptions import AirflowSkipException

                answer = context["ti"].xcom_pull(task_ids="request_approval") or {}
                if APPROVE not in (answer.get("chosen_options") or []):
                    raise AirflowSkipException(f"not approved: {_refusal(answer, spec)}")
                approved_by = _responder(answer)
            try:
                done = switch_step(spec, resolve_location(spec.mlflow_conn_id), decision, approved_by)
            except PromotionError as exc:
                raise fail(exc) from exc
            if outlet_events is not None:
                outlet_events[champion_asset].extra = _event_extra(spec, done)
            return done

        @task(task_id="rollback", outlets=[champion_asset], retries=0)
        def rollback(outlet_events: Any = None, **context: Any) -> dict:
            from dagfoundry.errors import PromotionError
            from dagfoundry.models.tracking import resolve_location
            from dagfoundry.promotion.steps import rollback_step

            requested_by = getattr(context.get("dag_run"), "triggering_user_name", None) or "unknown"
            try:
                done = rollback_step(spec, resolve_location(spec.mlflow_conn_id), dag_run_of(context),
                                     f"rollback requested by {requested_by}")
            except PromotionError as exc:
                raise fail(exc) from exc
            if outlet_events is not None:
                outlet_events[champion_asset].extra = _event_extra(spec, done)
            return done

        @task(task_id="record_outcome", trigger_rule="all_done", retries=0)
        def record_outcome(decision: Any, **context: Any) -> str:
            from dagfoundry.models.tracking import resolve_location
            from dagfoundry.promotion.steps import record_refusal

            ti = context["ti"]
            if decision.get("rollback"):
                return "rollback"
            if ti.xcom_pull(task_ids="promote"):
                return "promoted"
            if not decision["passed"] or decision["dry_run"]:
                return "dry_run" if decision["dry_run"] else "refused"
            if not needs_approval:
                return "switch aborted (see the promote task's log)"
            answer = ti.xcom_pull(task_ids="request_approval") or {}
            if APPROVE in (answer.get("chosen_options") or []):
                return "approved, switch failed"
            record_refusal(spec, resolve_location(spec.mlflow_conn_id), decision, _refusal(answer, spec))
            return "refused"

        decision = evaluate()
        routed = route(decision)
        promoted = promote(decision)
        rolled_back = rollback()
        outcome = record_outcome(decision)
        routed >> rolled_back >> outcome
        if needs_approval:
            approval = _approval_task(spec)
            routed >> approval >> promoted
        else:
            routed >> promoted
        promoted >> outcome
    return dag


def _approval_task(spec: ModelPromotionSpec) -> Any:
    """Return the approval request: a ``HITLOperator`` with Approve / Reject, Reject on timeout.

    Not ``ApprovalOperator``: its Reject skips the downstream tasks by raising before the answer
    is stored in XCom, so the run could not record who rejected; here ``promote`` reads the
    answer and skips itself.
    """
    from airflow.providers.standard.operators.hitl import HITLOperator

    return HITLOperator(
        task_id="request_approval",
        options=[APPROVE, REJECT],
        subject=f"Promote {spec.registered_model} "
                "v{{ ti.xcom_pull(task_ids='evaluate')['challenger'] }} to "
                f"{spec.aliases.champion}?",
        body=(
            "{{ ti.xcom_pull(task_ids='evaluate')['table'] }}\n\n"
            "Chart: `{{ ti.xcom_pull(task_ids='evaluate')['chart_uri'] }}` "
            "(file `{{ ti.xcom_pull(task_ids='evaluate')['chart_path'] }}`)\n\n"
            f"Without an answer within {spec.approval.timeout} the promotion is rejected."
        ),
        defaults=REJECT,
        response_timeout=spec.approval.timeout,
        retries=0,
    )


def _events_by_name(events: Any) -> dict[str, list[Any]]:
    """Return triggering Asset events keyed by Asset name (the context maps Asset objects or names)."""
    return {getattr(key, "name", str(key)): list(found) for key, found in dict(events).items()}


def _responder(answer: dict[str, Any]) -> str:
    user = answer.get("responded_by_user") or {}
    return f"{user.get('name') or user.get('id')}" if user else "nobody (timeout)"


def _refusal(answer: dict[str, Any], spec: ModelPromotionSpec) -> str:
    if answer.get("responded_by_user"):
        return f"approval rejected by {_responder(answer)}"
    if answer:
        return f"approval timed out after {spec.approval.timeout}"
    return "approval not given"


def _event_extra(spec: ModelPromotionSpec, done: dict[str, Any]) -> dict[str, Any]:
    return {"model": spec.registered_model, "action": done["action"], "version": done["champion_to"],
            "replaced": done["champion_from"], "history_entry": done["seq"], "dag_run": done["dag_run"]}
