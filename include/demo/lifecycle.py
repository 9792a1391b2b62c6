"""The whole lifecycle through a real scheduler: five example DAGs chained by their Assets.

Shared by ``make demo`` (``include/demo/run_demo.py``) and the end-to-end test
(``tests/integration/runtime/test_lifecycle.py``). The shop's
PostgreSQL source and the order event stream are prepared by the caller; this module drives a
running Airflow over ``/api/v2`` only: it starts the CDC run, and every later DAG must be
started by the Asset event of the one before (run type ``asset_triggered``)::

    shop_cdc --lake.mirror.shop.public.orders--> orders_events_compaction
      --lake.compaction.events.orders--> customer_order_features (the dates the compacted days affect)
      --features.customer_order_features--> shop_churn_retraining
      --models.shop_churn.challenger--> shop_churn_promotion
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include.airflow_rest import FINISHED, AirflowApi, AirflowApiError

CDC_DAG = "shop_cdc"
#: (DAG, the Asset whose event must start it), in data-flow order after the CDC run.
CHAIN = [
    ("orders_events_compaction", "lake.mirror.shop.public.orders"),
    ("customer_order_features", "lake.compaction.events.orders"),
    ("shop_churn_retraining", "features.customer_order_features"),
    ("shop_churn_promotion", "models.shop_churn.challenger"),
]
RETRAINING_DAG = "shop_churn_retraining"
#: While a stage runs, its unchanged task states are printed again after this long (it still runs).
QUIET_PROGRESS_SECONDS = 60.0
ALL_DAGS = [CDC_DAG, *(dag for dag, _ in CHAIN)]
#: The example specs the chain runs, with the schedule each gets in the chain's spec folder:
#: the Assets only, so no cron tick starts a run on its own while the chain is followed.
EXAMPLES = {
    "cdc/shop.yaml": None,
    "compaction/orders_events.yaml": ["lake.mirror.shop.public.orders"],
    "features/customer_order_features.yaml": ["lake.compaction.events.orders"],
    "models/shop_churn.yaml": ["features.customer_order_features"],
    "models/shop_churn_promotion.yaml": ["models.shop_churn.challenger"],
}


def write_chain_specs(examples: Path, target: Path, *, slot_name: str | None = None,
                      overrides: dict[str, dict] | None = None) -> None:
    """Copy the five example specs (and every defaults file) to ``target`` with the chain's schedules.

    :param slot_name: replication slot and publication of the CDC copy (slots are per server:
        a test must not share the demo's)
    :param overrides: example path (a key of :data:`EXAMPLES`) -> keys merged into that spec,
        nested mappings key by key (the demo's sizes: shorter capture bounds, a shorter holdout)
    """
    import yaml

    unknown = set(overrides or {}) - set(EXAMPLES)
    if unknown:
        raise ValueError(f"overrides for specs the chain does not run: {sorted(unknown)} (known: {sorted(EXAMPLES)})")
    target.mkdir(parents=True, exist_ok=True)
    for defaults in examples.rglob("defaults.yaml"):
        (target / defaults.relative_to(examples)).parent.mkdir(parents=True, exist_ok=True)
        (target / defaults.relative_to(examples)).write_text(defaults.read_text())
    for example, schedule in EXAMPLES.items():
        spec = _merged(yaml.safe_load((examples / example).read_text()), (overrides or {}).get(example, {}))
        spec["schedule"] = schedule
        if slot_name and spec["kind"] == "cdc_ingestion":
            spec["capture"] = {**spec.get("capture", {}), "slot_name": slot_name, "publication_name": slot_name}
        header = f"# Generated from dag_configs/{example} by include/demo/lifecycle.py: schedule on Assets only.\n"
        (target / example).parent.mkdir(parents=True, exist_ok=True)
        (target / example).write_text(header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


def _merged(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merged(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


@dataclass
class StageRun:
    """One DAG run of the chain, as the API shows it.

    :param triggered_by: the names of the Assets whose events started the run
    :param asset_events: those events as ``upstreamAssetEvents`` answers them (``name``,
        ``source_dag_id``, ``source_run_id``, ``created_dagruns`` ...)
    :param trigger_kind: the run's ``triggered_by`` field (``rest_api``, ``asset`` ...)
    """

    dag_id: str
    run_id: str
    run_type: str
    state: str
    triggered_by: list[str]
    seconds: float
    outputs: dict[str, Any] = field(default_factory=dict)
    asset_events: list[dict] = field(default_factory=list)
    trigger_kind: str | None = None


def run_chain(api: AirflowApi, *, say: Callable[[str], None] = print, stage_timeout: float = 1200.0,
              progress_every: float = 20.0) -> list[StageRun]:
    """Unpause the five DAGs, start the CDC run and follow the Asset chain to the promotion.

    While a stage runs, its task states are printed when they change (at most every
    ``progress_every`` seconds) and at least once a minute; when it ends, its duration and
    what started it.

    :param stage_timeout: how long one stage may take, from its start (or the upstream's end)
    :return: one :class:`StageRun` per DAG, in data-flow order; raises when a run fails
    """
    api.wait_for("the five DAGs to be parsed", lambda: set(ALL_DAGS) <= api.dag_ids(), timeout=180)
    errors = api.call("GET", "/importErrors")["import_errors"]
    if errors:
        raise AirflowApiError("import errors: " + "; ".join(e["stack_trace"][-500:] for e in errors))
    started = dt.datetime.now(dt.UTC)
    for dag_id in ALL_DAGS:
        api.unpause(dag_id)
    cdc_run = api.trigger(CDC_DAG)
    say(f"   {CDC_DAG}: started (Debezium snapshot or stream, landing batches, lake mirror on its engine)")
    stages = [_finish(api, CDC_DAG, cdc_run, started, say, stage_timeout, progress_every)]
    for dag_id, asset in CHAIN:
        _check_emitted(api, stages[-1], asset, dag_id)
        run = api.wait_for(
            f"a run of {dag_id} started by {asset}",
            lambda dag_id=dag_id: _asset_run(api, dag_id, started),
            timeout=stage_timeout,
        )
        stages.append(_finish(api, dag_id, run["dag_run_id"], started, say, stage_timeout, progress_every))
    return stages


def _check_emitted(api: AirflowApi, upstream: StageRun, asset: str, dag_id: str) -> None:
    """Raise at once when the upstream run emitted no event of ``asset``: ``dag_id`` would never start."""
    emitted = {e.get("name") for e in api.emitted_asset_events(upstream.dag_id, upstream.run_id)}
    if asset not in emitted:
        raise AirflowApiError(
            f"{upstream.dag_id} run {upstream.run_id} emitted no event of {asset} (it emitted "
            f"{sorted(emitted) or 'none'}), so {dag_id} will not start; what the run returned: {upstream.outputs}"
        )


def _asset_run(api: AirflowApi, dag_id: str, since: dt.datetime) -> dict | None:
    runs = [r for r in api.runs(dag_id, run_type="asset_triggered")
            if dt.datetime.fromisoformat(r["run_after"].replace("Z", "+00:00")) >= since]
    return runs[0] if runs else None


def _follow(api: AirflowApi, dag_id: str, run_id: str, say: Callable[[str], None], timeout: float,
            every: float) -> str:
    """Wait for the run to end; print its task states when they change (at most every ``every`` s) or once a minute."""
    began = time.monotonic()
    shown, shown_at = "", 0.0

    def ended() -> str | None:
        nonlocal shown, shown_at
        state = api.run(dag_id, run_id)["state"]
        if state in FINISHED:
            return state
        progress, now = _progress(api.task_states(dag_id, run_id)), time.monotonic()
        if progress != shown or now - shown_at >= QUIET_PROGRESS_SECONDS:
            say(f"     {dag_id} [{now - began:4.0f} s] {progress}")
            shown, shown_at = progress, now
        return None

    return api.wait_for(f"run {run_id} of {dag_id} to end", ended, timeout=timeout, every=every)


def _progress(states: dict[str, str | None]) -> str:
    """Describe task states briefly: what runs, how many are done, waiting, failed."""
    by_state: dict[str, list[str]] = {}
    for task, state in states.items():
        by_state.setdefault(state or "waiting", []).append(task)
    done = len(by_state.pop("success", [])) + len(by_state.pop("skipped", []))
    parts = [f"done {done}/{len(states)}"]
    for state in ("running", "deferred", "queued", "scheduled", "up_for_retry", "failed"):
        if state in by_state:
            parts.append(f"{state}: {', '.join(sorted(by_state.pop(state)))}")
    parts += [f"{state} {len(tasks)}" for state, tasks in sorted(by_state.items())]
    return "; ".join(parts)


def _finish(api: AirflowApi, dag_id: str, run_id: str, since: dt.datetime, say: Callable[[str], None],
            timeout: float, progress_every: float) -> StageRun:
    state = _follow(api, dag_id, run_id, say, timeout, progress_every)
    run = api.run(dag_id, run_id)
    ended = dt.datetime.fromisoformat((run.get("end_date") or dt.datetime.now(dt.UTC).isoformat()).replace("Z", "+00:00"))
    began = dt.datetime.fromisoformat((run.get("start_date") or run["run_after"]).replace("Z", "+00:00"))
    events = api.upstream_asset_events(dag_id, run_id) if run["run_type"] == "asset_triggered" else []
    triggered_by = sorted({e.get("name") or e.get("uri") for e in events})
    stage = StageRun(dag_id, run_id, run["run_type"], state, triggered_by, (ended - began).total_seconds(),
                     asset_events=events, trigger_kind=run.get("triggered_by"))
    elapsed = (ended - since).total_seconds()
    cause = f"started by {', '.join(triggered_by)}" if triggered_by else f"{run['run_type']} run"
    say(f"   {dag_id}: {state} in {stage.seconds:.0f} s ({cause}; {elapsed:.0f} s into the chain)")
    if state != "success":
        raise AirflowApiError(f"{dag_id} run {run_id} {state}: {api.failure_report(dag_id, run_id)}")
    stage.outputs = _outputs(api, dag_id, run_id)
    return stage


#: The XComs each stage's summary needs: DAG -> task ids.
OUTPUT_TASKS = {
    CDC_DAG: ["capture", "publish_mirror"],
    "orders_events_compaction": ["report"],
    "customer_order_features": ["materialize_online"],
    RETRAINING_DAG: ["register_model"],
    "shop_churn_promotion": ["evaluate", "record_outcome"],
}


def _outputs(api: AirflowApi, dag_id: str, run_id: str) -> dict[str, Any]:
    return {task: api.xcom(dag_id, run_id, task) for task in OUTPUT_TASKS.get(dag_id, [])}

