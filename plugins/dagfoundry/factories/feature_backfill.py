"""Factory of the ``feature_backfill`` kind.

One DAG serves three kinds of run, with the same query, so they agree by construction:

- a scheduled run, or one run of ``airflow backfill create``: one feature date, the day
  its data interval starts on (a cron schedule becomes ``CronDataIntervalTimetable`` so
  every run has a real ``[start, end)`` window);
- an Asset-triggered run (no logical date): the dates affected by the source days its
  triggering events name (``first_date``/``last_date`` in their extra, as compaction emits
  them: from the first such day to the last plus the longest window, at most the last
  complete day); without such events, the last complete day;
- a manual run with Params ``start``/``end``: a chunked backfill, ``chunk_days`` dates per
  Spark job.

Tasks: ``plan_feature_dates`` -> ``wait_for_sources`` (when a source says ``on_missing: wait``)
-> ``compute_features`` (a task group mapped over chunks: ``prepare`` writes the job file with
its query, ``duckdb`` runs it in the task's process (``engine: duckdb``, the default) or ``spark``
is the provider's ``SparkSubmitOperator`` with the spec's ``spark:`` block (``engine: spark``),
``publish`` verifies and publishes each date atomically) -> ``materialize_online`` (the latest complete partition, only when newer
than what the online store holds; emits the view's Asset when the run published dates).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import task, task_group

from dagfoundry.assets import emit_published, feature_view_asset_name, publishing_task_args
from dagfoundry.factories.dag_header import new_dag
from dagfoundry.registry import register_kind
from dagfoundry.spark_submit import application_path, submit_options
from dagfoundry.specs.feature_backfill import FeatureBackfillSpec

if TYPE_CHECKING:
    from dagfoundry.specs.loading import LoadedSpec

log = logging.getLogger(__name__)


def feature_dates_of_run(
    params: dict,
    data_interval_start: Any,
    run_after: Any,
    *,
    changed_days: tuple[str, str] | None = None,
    longest_window_days: int = 1,
) -> tuple[str, str]:
    """Return the first and last feature date a run computes (ISO dates, inclusive).

    :param params: the run's params (``start``/``end`` make a chunked backfill)
    :param data_interval_start: the run's interval start, or None for runs without one
    :param run_after: when the run was due (Asset-triggered and manual runs)
    :param changed_days: first and last source day the triggering Asset events name: a
        change on day ``d`` moves the features of ``d`` up to ``d + longest_window_days - 1``
    :param longest_window_days: the view's longest window
    """
    import datetime as dt

    start, end = params.get("start"), params.get("end")
    if start or end:
        if not (start and end):
            raise ValueError("a chunked backfill needs both params 'start' and 'end' (YYYY-MM-DD)")
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        if last < first:
            raise ValueError(f"backfill end {end} is before start {start}")
        return first.isoformat(), last.isoformat()
    if changed_days and run_after is not None:
        first = dt.date.fromisoformat(changed_days[0])
        affected = dt.date.fromisoformat(changed_days[1]) + timedelta(days=longest_window_days - 1)
        last = min(affected, (run_after - timedelta(days=1)).date())
        if first <= last:
            return first.isoformat(), last.isoformat()
    if data_interval_start is not None:
        day = data_interval_start.date().isoformat()
        return day, day
    day = (run_after - timedelta(days=1)).date().isoformat()
    return day, day


def changed_days_of(triggering_asset_events: Any) -> tuple[str, str] | None:
    """Return the first and last day named by triggering Asset events' extras (``first_date``/``last_date``).

    :param triggering_asset_events: the run's ``triggering_asset_events`` (Asset -> events), or None
    """
    firsts, lasts = [], []
    for events in dict(triggering_asset_events or {}).values():
        for event in events:
            extra = dict(getattr(event, "extra", None) or {})
            if extra.get("first_date") and extra.get("last_date"):
                firsts.append(str(extra["first_date"]))
                lasts.append(str(extra["last_date"]))
    return (min(firsts), max(lasts)) if firsts else None


def chunk_summaries(pulled: Any) -> list[dict]:
    """Return the chunks' publish summaries from an ``xcom_pull`` of the mapped ``publish`` task.

    One chunk comes back as its value, several as a list. On a real scheduler with a PostgreSQL
    metadata database a summary was seen to come back as its JSON text (``materialize_online``
    then failed with "'str' object has no attribute 'get'"), so text is decoded here.
    """
    import json

    if pulled is None:
        return []
    items = [pulled] if isinstance(pulled, (dict, str)) else list(pulled)
    decoded = [json.loads(item) if isinstance(item, str) else item for item in items]
    return [item for item in decoded if item]


@register_kind("feature_backfill", FeatureBackfillSpec)
def build_feature_backfill(loaded: LoadedSpec) -> Any:
    """Build the feature DAG of one spec."""
    spec: FeatureBackfillSpec = loaded.spec  # type: ignore[assignment]
    asset_name = feature_view_asset_name(spec.view_name)
    waits = any(source.on_missing == "wait" for source in spec.sources)
    longest_window = max((getattr(f, "window_days", 1) or 1 for f in spec.features), default=1)

    with new_dag(loaded, data_intervals=True, outlets=[asset_name]) as dag:

        @task(task_id="plan_feature_dates")
        def plan_feature_dates(params: dict | None = None, **context: Any) -> list[dict[str, str]]:
            from airflow.sdk.exceptions import AirflowFailException

            from dagfoundry.features.compute import chunk_ranges

            try:
                first, last = feature_dates_of_run(
                    params or {}, context.get("data_interval_start"), context["dag_run"].run_after,
                    changed_days=changed_days_of(context.get("triggering_asset_events")),
                    longest_window_days=longest_window,
                )
            except ValueError as exc:  # a reversed or half range: a retry gets the same params
                raise AirflowFailException(str(exc)) from exc
            chunk_days = int((params or {}).get("chunk_days") or 90)
            return chunk_ranges(first, last, chunk_days)

        @task.sensor(task_id="wait_for_sources", poke_interval=300, timeout=12 * 3600, mode="reschedule")
        def wait_for_sources(chunks: list[dict[str, str]]) -> Any:
            from airflow.sdk import PokeReturnValue

            from dagfoundry.features.source_readiness import feature_dates, missing_source_partitions
            from dagfoundry.settings import lake_root

            definition = spec.definition(str(lake_root()))
            missing = [
                partition
                for chunk in chunks
                for day in feature_dates(chunk["start"], chunk["end"])
                for partition in missing_source_partitions(definition, day)
            ]
            return PokeReturnValue(is_done=not missing, xcom_value={"missing": missing[:20]})

        # No max_active_tis_per_dag: every chunk stages under its own version and publishes
        # only its own dates, so days of a backfill run side by side (up to max_active_runs).
        @task_group(group_id="compute_features")
        def compute_features(chunk: dict[str, str]) -> None:
            """Plan one chunk's dates, compute them with Spark, verify and publish each date."""

            @task(task_id="prepare", multiple_outputs=True)
            def prepare(chunk: dict[str, str], run_id: str | None = None) -> dict:
                from dagfoundry.features.compute import owner_key, prepare_feature_job
                from dagfoundry.settings import lake_root

                root = str(lake_root())
                owner = owner_key(run_id or "manual", chunk["start"], chunk["end"])
                return prepare_feature_job(spec.definition(root), root, chunk["start"], chunk["end"], owner=owner)

            job: Any = prepare(chunk)
            compute: Any
            if spec.engine == "spark":
                compute = SparkSubmitOperator(
                    task_id="spark",
                    application=application_path("feature_compute"),
                    application_args=job["application_args"],
                    name=f"dagfoundry-features-{spec.name}",
                    **submit_options(spec.spark),
                )
            else:

                @task(task_id="duckdb", multiple_outputs=False)
                def run_on_duckdb(job: dict) -> dict:
                    """Run the chunk's query on the embedded engine, in this task's process."""
                    from dagfoundry.features.compute import run_feature_job

                    result = run_feature_job(job, engine="duckdb", duckdb=spec.duckdb.settings())
                    log.info("feature view %s: engine duckdb computed %s rows for %s dates in %.1f s",
                             spec.view_name, result.get("rows"), len(job["dates"]), result["seconds"])
                    return result

                compute = run_on_duckdb(job)

            # One XCom per chunk: a ``-> dict`` task would also push each key (inferred multiple_outputs).
            @task(task_id="publish", multiple_outputs=False)
            def publish(job: dict) -> dict:
                from dagfoundry.features.compute import publish_feature_job
                from dagfoundry.settings import lake_root

                return {**publish_feature_job(spec.definition(str(lake_root())), job), "engine": spec.engine}

            compute >> publish(job)

        @task(task_id="materialize_online", **publishing_task_args(spec.name, [asset_name]))
        def materialize_online(ti: Any = None, outlet_events: Any = None) -> dict:
            from dagfoundry.features.materialize import materialize_newest
            from dagfoundry.settings import lake_root

            root = str(lake_root())
            results = chunk_summaries(ti.xcom_pull(task_ids="compute_features.publish"))
            published = sorted(d for r in results for d in r.get("published", []))
            online = materialize_newest(spec.definition(root), root, published)
            if published:  # an event says "published": none when every date was skipped
                extra = {"dates": len(published), "first": published[0], "last": published[-1],
                         "online_date": online.get("feature_date")}
                emit_published(outlet_events, spec.name, asset_name, extra)
            return {"published": published, "online": online}

        chunks: Any = plan_feature_dates()
        computed: Any = compute_features.expand(chunk=chunks)
        if waits:
            wait_for_sources(chunks) >> computed
        computed >> materialize_online()
    return dag
