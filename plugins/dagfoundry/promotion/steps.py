"""The promotion DAG's task callables: evaluate, switch, roll back, record a refusal.

Each takes the spec and plain values and returns JSON-safe dicts (they travel through XCom).
The evaluation's champion version is the check-and-set's expected value: the switch moves
nothing if the champion alias points elsewhere by then.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagfoundry.errors import PromotionError
from dagfoundry.promotion import audit

if TYPE_CHECKING:
    from dagfoundry.models.tracking import MlflowLocation
    from dagfoundry.promotion.switch import Hook
    from dagfoundry.specs.model_promotion import ModelPromotionSpec

log = logging.getLogger(__name__)

CHART_ARTIFACT = "promotion/comparison.png"


def client_for(location: MlflowLocation) -> Any:
    """Return an MLflow client of ``location`` (tracking and registry)."""
    import mlflow

    from dagfoundry.models.tracking import configure

    configure(location)
    return mlflow.MlflowClient()


def run_folder(lake_root: Path, dag_id: str, run_id: str) -> Path:
    """Return (and create) the folder of one promotion run's files (the chart, the evaluation)."""
    folder = lake_root / "_promotion" / dag_id / re.sub(r"[^A-Za-z0-9_.+-]", "_", run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def announced_challenger(spec: ModelPromotionSpec, events: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """Return the version and holdout digest of the newest triggering Asset event of this model, if any."""
    for extra in reversed(events):
        if extra.get("model") == spec.registered_model and extra.get("version"):
            return str(extra["version"]), extra.get("holdout_digest")
    return None, None


def evaluate_step(spec: ModelPromotionSpec, location: MlflowLocation, lake_root: Path, folder: Path,
                  dag_run: str, *, dry_run: bool, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Score challenger and champion on one holdout, apply the gates, draw and log the chart.

    :return: the decision: ``passed``, ``reason``, ``challenger``, ``expected_champion``, the
        comparison table, the chart's path and MLflow URI
    :raises PromotionError: there is no challenger
    """
    from dagfoundry.promotion.evaluation import HoldoutProblem, evaluate_version, load_holdout
    from dagfoundry.promotion.gates import apply_gates, comparison_markdown, failed
    from dagfoundry.promotion.switch import alias_version

    client = client_for(location)
    model, aliases = spec.registered_model, spec.aliases
    version, announced_digest = announced_challenger(spec, events)
    version = version or alias_version(client, model, aliases.challenger)
    if version is None:
        raise PromotionError(f"{model}: no challenger: alias {aliases.challenger!r} is not set and no Asset "
                             "event names a version; run the retraining DAG first")
    expected = alias_version(client, model, aliases.champion)
    challenger = client.get_model_version(model, version)
    label = challenger.tags.get("dagfoundry.label_column", "")
    evaluation: dict[str, Any] = {"challenger": {"version": version, "metrics": {}}, "champion": None,
                                  "holdout": {"digest": None, "rows": 0, "source": spec.holdout.source}}
    try:
        if version == expected:
            raise HoldoutProblem(f"version {version} is already the champion")
        holdout, digest = load_holdout(spec, client, challenger, lake_root, announced_digest)
        evaluation["holdout"].update(digest=digest, rows=len(holdout))
        evaluation["challenger"] = evaluate_version(spec, challenger, holdout, label)
        if expected is not None:
            evaluation["champion"] = evaluate_version(spec, client.get_model_version(model, expected), holdout, label)
    except HoldoutProblem as exc:
        evaluation["holdout"]["problem"] = str(exc)
    gates = apply_gates(spec, evaluation)
    refused = failed(gates)
    reason = ("; ".join(g.detail for g in refused) if refused
              else "all gates passed" + ("" if expected else " (first model of this name: floors and budgets only)"))
    decision: dict[str, Any] = {
        "model": model, "challenger": version, "expected_champion": expected, "passed": not refused,
        "dry_run": dry_run, "reason": reason, "evaluation": evaluation, "gates": [g.as_dict() for g in gates],
        "table": comparison_markdown(evaluation, gates) if evaluation["challenger"]["metrics"] else reason,
        "dag_run": dag_run, "evaluated_at": audit.now_text(),
    }
    decision.update(_log_report(spec, client, location, folder, decision, gates))
    if not dry_run:
        audit.tag_version(client, model, version, {
            audit.DECISION: "passed" if not refused else "refused", audit.REASON: reason,
            audit.EVALUATED_AT: decision["evaluated_at"], audit.DAG_RUN: dag_run,
            audit.HOLDOUT_DIGEST: str(evaluation["holdout"]["digest"]), audit.CHART: decision["chart_uri"],
            audit.EVALUATION: {"champion": expected, "metrics": _metrics_of(evaluation),
                               "failed": [g.gate for g in refused], "gates": audit.compact_gates(decision["gates"])},
        })
    log.info("%s v%s vs champion %s: %s\n%s\nchart: %s (MLflow: %s)", model, version, expected,
             "PASSED" if not refused else "REFUSED: " + reason, decision["table"], decision["chart_path"],
             decision["chart_uri"])
    return decision


def _metrics_of(evaluation: dict[str, Any]) -> dict[str, Any]:
    champion = evaluation.get("champion")
    return {"challenger": evaluation["challenger"]["metrics"], "champion": champion["metrics"] if champion else None}


def _log_report(spec: ModelPromotionSpec, client: Any, location: MlflowLocation, folder: Path,
                decision: dict[str, Any], gates: list[Any]) -> dict[str, Any]:
    """Draw the chart and log it with the decision as an MLflow run of ``dagfoundry/<model>/promotion``."""
    from dagfoundry.models.registry_tags import experiment_name
    from dagfoundry.models.tracking import ensure_experiment
    from dagfoundry.promotion.chart import draw_comparison

    evaluation = decision["evaluation"]
    verdict = "passed" if decision["passed"] else "refused"
    chart = None
    if evaluation["challenger"]["metrics"]:
        chart = draw_comparison(evaluation, gates, folder / "comparison.png",
                                f"{spec.registered_model} v{decision['challenger']}: {verdict}")
    experiment = ensure_experiment(experiment_name(spec.registered_model) + "/promotion", location)
    run = client.create_run(experiment, run_name=decision["dag_run"].replace("/", " "), tags={
        audit.DECISION: verdict if not decision["dry_run"] else f"dry_run ({verdict})",
        audit.REASON: decision["reason"][:5000], audit.DAG_RUN: decision["dag_run"],
    })
    report = {"chart_path": str(chart or ""), "report_run_id": run.info.run_id,
              "chart_uri": f"{run.info.artifact_uri}/{CHART_ARTIFACT}" if chart is not None else ""}
    (folder / "decision.json").write_text(json.dumps({**decision, **report}, indent=2, sort_keys=True, default=str))
    for side in ("challenger", "champion"):
        for metric, value in ((evaluation.get(side) or {}).get("metrics") or {}).items():
            client.log_metric(run.info.run_id, f"{side}.{metric}", value)
    client.log_artifact(run.info.run_id, str(folder / "decision.json"), "promotion")
    if chart is not None:
        client.log_artifact(run.info.run_id, str(chart), "promotion")
    client.set_terminated(run.info.run_id)
    return report


def switch_step(spec: ModelPromotionSpec, location: MlflowLocation, decision: dict[str, Any],
                approved_by: str, hook: Hook = None) -> dict[str, Any]:
    """Promote the evaluated challenger with check-and-set; return the history entry."""
    from dagfoundry.promotion.switch import promote

    if not decision["passed"] or decision["dry_run"]:
        raise PromotionError(f"{decision['model']} v{decision['challenger']} was not cleared for promotion: "
                             f"{decision['reason']}")
    entry = {"dag_run": decision["dag_run"], "approved_by": approved_by,
             "holdout_digest": decision["evaluation"]["holdout"]["digest"],
             "metrics": _metrics_of(decision["evaluation"]), "chart": decision["chart_uri"],
             # .get: a decision in XCom from before gates were recorded (a deploy during a run)
             "gates": audit.compact_gates(decision.get("gates") or [])}
    done = promote(client_for(location), spec.registered_model, spec.aliases, decision["challenger"],
                   decision["expected_champion"], entry, hook)
    log.info("%s: champion v%s -> v%s (previous_champion v%s), history entry %s", spec.registered_model,
             done["champion_from"], done["champion_to"], done["previous_champion"], done["seq"])
    return done


def rollback_step(spec: ModelPromotionSpec, location: MlflowLocation, dag_run: str, requested_by: str,
                  hook: Hook = None) -> dict[str, Any]:
    """Restore the previous champion (check-and-set against the champion read now); return the history entry."""
    from dagfoundry.promotion.switch import alias_version, rollback

    client = client_for(location)
    expected = alias_version(client, spec.registered_model, spec.aliases.champion)
    done = rollback(client, spec.registered_model, spec.aliases, expected,
                    {"dag_run": dag_run, "approved_by": requested_by}, hook)
    log.info("%s: rolled back, champion v%s -> v%s, history entry %s", spec.registered_model,
             done["champion_from"], done["champion_to"], done["seq"])
    return done


def record_refusal(spec: ModelPromotionSpec, location: MlflowLocation, decision: dict[str, Any], reason: str) -> None:
    """Record on the challenger why a cleared challenger was not promoted (approval rejected or timed out)."""
    client = client_for(location)
    audit.tag_version(client, spec.registered_model, decision["challenger"],
                      {audit.DECISION: "refused", audit.REASON: reason})
    log.info("%s v%s not promoted: %s", spec.registered_model, decision["challenger"], reason)
