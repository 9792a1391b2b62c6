"""Approval in the Airflow UI: the DAG runs under ``dag.test()`` and waits in ``awaiting_input``;
a thread answers through Airflow's HITL REST API (the same call the Required Actions page makes),
or lets the deadline pass and runs the scheduler's timeout sweep."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from promotion_zoo import register

pytestmark = pytest.mark.integration

TASK = "request_approval"


def run_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id].test()


def states(run) -> dict[str, str | None]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def wait_for_request(dag_id: str, timeout: float = 300):
    """Return the approval task instance of ``dag_id``'s newest run once it awaits input."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            ti = session.scalars(select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.task_id == TASK,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT)).first()
            if ti is not None:
                return ti.run_id, ti.id
        time.sleep(0.5)
    raise AssertionError(f"{dag_id}: no approval request within {timeout} s")


@pytest.fixture(scope="module")
def hitl_api(airflow_db):
    """Return Airflow's REST API in process (simple auth manager, every user an admin)."""
    from fastapi.testclient import TestClient

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    from airflow.api_fastapi.app import create_app

    with TestClient(create_app("core")) as client:
        yield client
    monkeypatch.undo()


def answer(api, dag_id: str, option: str, before=None) -> threading.Thread:
    """Answer ``dag_id``'s approval request with ``option`` from another thread, as a person in the UI."""
    outcome: dict = {}

    def respond() -> None:
        run_id, _ = wait_for_request(dag_id)
        request = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails")
        outcome["request"] = request.json()
        if before:
            before()
        response = api.patch(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{TASK}/-1/hitlDetails",
                             json={"chosen_options": [option], "params_input": {}})
        outcome["status"] = response.status_code
        outcome["body"] = response.json()

    thread = threading.Thread(target=respond, daemon=True)
    thread.outcome = outcome  # type: ignore[attr-defined]
    thread.start()
    return thread


def test_approved_challenger_is_promoted_and_the_request_shows_the_comparison(hitl_api, promotion_lake, registry):
    old = register("m_approve", "north", promotion_lake)
    registry.set_registered_model_alias("m_approve", "champion", old)
    new = register("m_approve", "all", promotion_lake)
    responder = answer(hitl_api, "promo_approve", "Approve")
    run = run_dag("promo_approve")
    responder.join(10)
    outcome = responder.outcome  # type: ignore[attr-defined]
    assert outcome["status"] == 200, outcome
    request = outcome["request"]
    assert request["subject"] == f"Promote m_approve v{new} to champion?"
    assert "| roc_auc |" in request["body"] and "comparison.png" in request["body"]
    assert request["options"] == ["Approve", "Reject"]
    assert states(run)["promote"] == "success", states(run)
    from dagfoundry.promotion.audit import read_history
    from dagfoundry.promotion.switch import alias_version

    assert alias_version(registry, "m_approve", "champion") == new
    [entry] = read_history(registry, "m_approve")
    assert entry["approved_by"] == outcome["body"]["responded_by"]["name"]


def test_rejected_challenger_is_not_promoted_and_the_reason_is_recorded(hitl_api, promotion_lake, registry):
    old = register("m_reject", "north", promotion_lake)
    registry.set_registered_model_alias("m_reject", "champion", old)
    new = register("m_reject", "all", promotion_lake)
    responder = answer(hitl_api, "promo_reject", "Reject")
    run = run_dag("promo_reject")
    responder.join(10)
    assert states(run)["promote"] == "skipped" and states(run)["record_outcome"] == "success", states(run)
    from dagfoundry.promotion.switch import alias_version

    assert alias_version(registry, "m_reject", "champion") == old
    tags = registry.get_model_version("m_reject", new).tags
    assert tags["dagfoundry.promotion.decision"] == "refused"
    assert tags["dagfoundry.promotion.reason"].startswith("approval rejected by ")


def test_unanswered_request_times_out_as_a_rejection(airflow_db, promotion_lake, registry):
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils import timezone
    from airflow.utils.session import create_session

    old = register("m_timeout", "north", promotion_lake)
    registry.set_registered_model_alias("m_timeout", "champion", old)
    new = register("m_timeout", "all", promotion_lake)

    def let_deadline_pass() -> None:
        _, ti_id = wait_for_request("promo_timeout")
        with create_session() as session:
            session.get(TaskInstance, ti_id).trigger_timeout = timezone.utcnow()
        time.sleep(0.2)
        sweeper = type("Sweeper", (), {"log": logging.getLogger("timeout_sweep")})()
        SchedulerJobRunner.check_awaiting_input_timeouts(sweeper)  # what the scheduler runs each loop

    thread = threading.Thread(target=let_deadline_pass, daemon=True)
    thread.start()
    run = run_dag("promo_timeout")
    thread.join(10)
    assert states(run)["promote"] == "skipped", states(run)
    from dagfoundry.promotion.switch import alias_version

    assert alias_version(registry, "m_timeout", "champion") == old
    assert registry.get_model_version("m_timeout", new).tags["dagfoundry.promotion.reason"].startswith(
        "approval timed out")


def test_champion_moved_while_waiting_for_approval_is_not_overwritten(hitl_api, promotion_lake, registry):
    from dagfoundry.promotion.audit import read_history
    from dagfoundry.promotion.switch import alias_version

    old = register("m_race", "north", promotion_lake)
    other = register("m_race", "south", promotion_lake)
    registry.set_registered_model_alias("m_race", "champion", old)
    new = register("m_race", "all", promotion_lake)

    def another_process_promotes() -> None:
        registry.set_registered_model_alias("m_race", "champion", other)

    responder = answer(hitl_api, "promo_race", "Approve", before=another_process_promotes)
    run = run_dag("promo_race")
    responder.join(10)
    assert states(run)["promote"] == "failed", states(run)
    assert alias_version(registry, "m_race", "champion") == other
    assert alias_version(registry, "m_race", "previous_champion") is None
    assert read_history(registry, "m_race") == []
    assert registry.get_model_version("m_race", new).tags.get("dagfoundry.promotion.promoted_at") is None
