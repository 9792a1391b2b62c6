"""The model_promotion kind through Airflow (``dag.test()``) against a real MLflow registry on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from promotion_zoo import register

pytestmark = pytest.mark.integration


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def run_dag(dag_id: str, **conf):
    return load_dag(dag_id).test(run_conf=conf or None)


def run_dag_triggered_by(dag_id: str, asset_name: str, extra: dict):
    """Run a DAG through ``dag.test()`` as a run that an event of ``asset_name`` with ``extra`` triggered.

    ``dag.test()`` creates a manual run; the run is given the event as a consumed Asset event
    (as the scheduler does for an Asset-triggered run), so the tasks' context carries it in
    ``triggering_asset_events`` through Airflow's own execution API.
    """
    from unittest import mock

    import airflow.models.dagrun as dagrun_module
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    create = dagrun_module.get_or_create_dagrun

    def create_with_event(*, session, **kwargs):
        run = create(session=session, **kwargs)
        asset = session.scalar(select(AssetModel).where(AssetModel.name == asset_name))
        if asset is None:
            asset = AssetModel(name=asset_name, uri=asset_name)
            session.add(asset)
            session.flush()
        event = AssetEvent(asset_id=asset.id, extra=extra, source_dag_id="retraining", source_task_id="register_model",
                           source_run_id="scheduled__announced")
        session.add(event)
        session.flush()
        run.consumed_asset_events.append(event)
        session.commit()
        return run

    with mock.patch.object(dagrun_module, "get_or_create_dagrun", create_with_event):
        return load_dag(dag_id).test()


def states(run) -> dict[str, str | None]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def aliases(client, model: str) -> dict[str, str | None]:
    from dagfoundry.promotion.switch import alias_version

    return {a: alias_version(client, model, a) for a in ("champion", "challenger", "previous_champion")}


def history(client, model: str) -> list[dict]:
    from dagfoundry.promotion.audit import read_history

    return read_history(client, model)


def champion_events(model: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                               .where(AssetModel.name == f"models.{model}.champion")).all()
        return [dict(e.extra) for e in rows]


def test_first_model_is_promoted_on_its_floors_alone(airflow_db, promotion_lake, registry):
    # A model on noise only would lose to any champion; alone it only has to pass the floors.
    version = register("m_first", "north", promotion_lake)
    events_before = len(champion_events("m_first"))  # the test Airflow home outlives the registry
    run = run_dag("promo_first")
    assert states(run)["promote"] == "success", states(run)
    assert aliases(registry, "m_first") == {"champion": version, "challenger": version, "previous_champion": None}
    [entry] = history(registry, "m_first")
    assert entry["champion_from"] is None and entry["champion_to"] == version and entry["action"] == "promote"
    assert entry["approved_by"] == "auto (gates passed)"
    tags = registry.get_model_version("m_first", version).tags
    assert tags["dagfoundry.promotion.decision"] == "passed"
    assert "first model of this name" in tags["dagfoundry.promotion.reason"]
    assert [e["version"] for e in champion_events("m_first")[events_before:]] == [version]


def test_first_model_below_a_floor_is_refused(airflow_db, promotion_lake, registry):
    version = register("m_first_floor", "north", promotion_lake)
    run = run_dag("promo_first_floor")
    assert states(run)["promote"] == "skipped"
    assert aliases(registry, "m_first_floor")["champion"] is None
    assert "must be at least 0.99" in registry.get_model_version("m_first_floor", version).tags[
        "dagfoundry.promotion.reason"]


def test_better_challenger_is_promoted_and_old_champion_kept_as_previous(airflow_db, promotion_lake, registry):
    old = register("m_better", "north", promotion_lake)
    registry.set_registered_model_alias("m_better", "champion", old)
    new = register("m_better", "all", promotion_lake)
    run = run_dag("promo_better")
    assert states(run)["promote"] == "success", states(run)
    assert aliases(registry, "m_better") == {"champion": new, "challenger": new, "previous_champion": old}
    [entry] = history(registry, "m_better")
    assert (entry["champion_from"], entry["champion_to"], entry["previous_champion"]) == (old, new, old)
    assert entry["metrics"]["challenger"]["roc_auc"] > entry["metrics"]["champion"]["roc_auc"]
    # Each gate's result: [passed, challenger's figure, threshold], in the history and on the version.
    assert set(entry["gates"]) == {"holdout", "improvement:log_loss", "floor:roc_auc", "improvement:roc_auc"}
    assert all(passed for passed, _, _ in entry["gates"].values())
    assert entry["gates"]["floor:roc_auc"][1:] == [pytest.approx(entry["metrics"]["challenger"]["roc_auc"], abs=1e-5),
                                                   0.55]
    evaluation_tag = json.loads(registry.get_model_version("m_better", new).tags["dagfoundry.promotion.evaluation"])
    assert evaluation_tag["gates"] == entry["gates"] and evaluation_tag["failed"] == []
    assert registry.get_model_version("m_better", old).tags["dagfoundry.promotion.replaced_by"] == new
    assert registry.get_model_version("m_better", new).tags["dagfoundry.promotion.replaced"] == old
    assert champion_events("m_better")[-1]["version"] == new
    [folder] = (promotion_lake / "_promotion" / "promo_better").iterdir()
    assert (folder / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    decision = json.loads((folder / "decision.json").read_text())
    assert decision["chart_uri"].endswith("promotion/comparison.png")
    artifacts = {a.path for a in registry.list_artifacts(decision["report_run_id"], "promotion")}
    assert artifacts == {"promotion/comparison.png", "promotion/decision.json"}
    assert registry.get_model_version("m_better", new).tags["dagfoundry.promotion.chart"] == decision["chart_uri"]


@pytest.mark.parametrize(
    ("scenario", "champion_kind", "challenger_kind", "reason"),
    [
        ("worse", "north", "noise", "improvement"),
        ("floor", "north", "all", "must be at least 0.99"),
        ("segment", "south", "north", "region=south"),
        ("budget", "north", "all", "prediction latency"),
        ("size", "north", "all", "model size"),
    ],
)
def test_refused_challenger_changes_no_alias(airflow_db, promotion_lake, registry, scenario, champion_kind,
                                             challenger_kind, reason):
    model = f"m_{scenario}"
    old = register(model, champion_kind, promotion_lake)
    registry.set_registered_model_alias(model, "champion", old)
    new = register(model, challenger_kind, promotion_lake)
    before = aliases(registry, model)
    events_before = len(champion_events(model))
    run = run_dag(f"promo_{scenario}")
    assert states(run)["evaluate"] == "success" and states(run)["promote"] == "skipped", states(run)
    assert aliases(registry, model) == before == {"champion": old, "challenger": new, "previous_champion": None}
    assert history(registry, model) == []
    assert champion_events(model)[events_before:] == []
    tags = registry.get_model_version(model, new).tags
    assert tags["dagfoundry.promotion.decision"] == "refused"
    assert reason in tags["dagfoundry.promotion.reason"], tags["dagfoundry.promotion.reason"]
    evaluation = json.loads(tags["dagfoundry.promotion.evaluation"])
    assert evaluation["failed"] and all(evaluation["gates"][g][0] is False for g in evaluation["failed"])
    assert all(result[0] for g, result in evaluation["gates"].items() if g not in evaluation["failed"])


def test_holdout_with_another_digest_is_refused_with_that_reason(airflow_db, promotion_lake, registry):
    old = register("m_digest", "north", promotion_lake)
    registry.set_registered_model_alias("m_digest", "champion", old)
    new = register("m_digest", "all", promotion_lake)
    registry.set_model_version_tag("m_digest", new, "dagfoundry.holdout_digest", "sha256:" + "0" * 64)
    run = run_dag("promo_digest")
    assert states(run)["promote"] == "skipped"
    assert aliases(registry, "m_digest")["champion"] == old
    assert "holdout digest mismatch" in registry.get_model_version("m_digest", new).tags["dagfoundry.promotion.reason"]


def test_challenger_announced_with_another_holdout_digest_is_refused_with_that_reason(
    airflow_db, promotion_lake, registry
):
    """The triggering Asset event (what the retraining emitted) names the holdout digest; the
    challenger run's holdout has another one (its recorded tag is intact): refused."""
    old = register("m_announced", "north", promotion_lake)
    registry.set_registered_model_alias("m_announced", "champion", old)
    new = register("m_announced", "all", promotion_lake)
    recorded = registry.get_model_version("m_announced", new).tags["dagfoundry.holdout_digest"]
    announced = "sha256:" + "1" * 64
    run = run_dag_triggered_by("promo_announced", "models.m_announced.challenger",
                               {"model": "m_announced", "version": new, "holdout_digest": announced, "run_id": "r"})
    assert states(run)["evaluate"] == "success" and states(run)["promote"] == "skipped", states(run)
    [folder] = (promotion_lake / "_promotion" / "promo_announced").iterdir()
    decision = json.loads((folder / "decision.json").read_text())
    assert decision["challenger"] == new and decision["passed"] is False
    expected = f"the Asset event announced {announced}, version {new}'s holdout has {recorded}"
    assert expected in decision["reason"]
    tags = registry.get_model_version("m_announced", new).tags
    assert tags["dagfoundry.promotion.decision"] == "refused" and expected in tags["dagfoundry.promotion.reason"]
    assert json.loads(tags["dagfoundry.promotion.evaluation"])["gates"] == {"holdout": [False, None, None]}
    assert aliases(registry, "m_announced") == {"champion": old, "challenger": new, "previous_champion": None}
    assert history(registry, "m_announced") == []


def test_dry_run_changes_nothing_in_the_registry(airflow_db, promotion_lake, registry):
    old = register("m_dry", "north", promotion_lake)
    registry.set_registered_model_alias("m_dry", "champion", old)
    new = register("m_dry", "all", promotion_lake)
    before = (aliases(registry, "m_dry"), registry.get_registered_model("m_dry").tags,
              {v: registry.get_model_version("m_dry", v).tags for v in (old, new)})
    run = run_dag("promo_dry", dry_run=True)
    assert states(run)["evaluate"] == "success" and states(run)["promote"] == "skipped"
    after = (aliases(registry, "m_dry"), registry.get_registered_model("m_dry").tags,
             {v: registry.get_model_version("m_dry", v).tags for v in (old, new)})
    assert after == before


def test_rollback_restores_the_previous_champion_once(airflow_db, promotion_lake, registry, capfd):
    old = register("m_rollback", "north", promotion_lake)
    registry.set_registered_model_alias("m_rollback", "champion", old)
    new = register("m_rollback", "all", promotion_lake)
    assert states(run_dag("promo_rollback"))["promote"] == "success"
    promoted_state = (aliases(registry, "m_rollback"), registry.get_registered_model("m_rollback").tags)
    dry = run_dag("promo_rollback", rollback=True, dry_run=True)
    assert states(dry)["rollback"] == "skipped"
    assert (aliases(registry, "m_rollback"), registry.get_registered_model("m_rollback").tags) == promoted_state
    run = run_dag("promo_rollback", rollback=True)
    assert states(run)["rollback"] == "success" and states(run)["evaluate"] == "success"
    assert aliases(registry, "m_rollback") == {"champion": old, "challenger": new, "previous_champion": None}
    promoted, rolled_back = history(registry, "m_rollback")
    assert (rolled_back["action"], rolled_back["champion_from"], rolled_back["champion_to"]) == ("rollback", new, old)
    assert "dagfoundry.promotion.rolled_back_at" in registry.get_model_version("m_rollback", new).tags
    assert champion_events("m_rollback")[-1] == {**champion_events("m_rollback")[-1], "action": "rollback",
                                                 "version": old}

    capfd.readouterr()
    again = run_dag("promo_rollback", rollback=True)
    logged = capfd.readouterr()
    assert states(again)["rollback"] == "failed"
    assert (f"m_rollback: nothing to roll back to: alias 'previous_champion' is not set (champion is {old}); "
            "a rollback restores one previous champion once") in logged.out + logged.err
    assert aliases(registry, "m_rollback")["champion"] == old
    assert len(history(registry, "m_rollback")) == 2
