"""Build the DAG object every kind starts from: identity, schedule, retries, alerts, params, docs."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from airflow.sdk import DAG, Asset, Param

from dagfoundry.specs.documents import format_key_path
from dagfoundry.specs.types import CronOrAssets

if TYPE_CHECKING:
    from dagfoundry.specs.base import DagSpec, ParamDeclaration
    from dagfoundry.specs.loading import LoadedSpec

#: Presets as cron expressions, for timetables that need explicit data intervals.
PRESET_CRON = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
}


def new_dag(
    loaded: LoadedSpec,
    *,
    data_intervals: bool = False,
    outlets: list[str] | None = None,
    extra_params: dict[str, Param] | None = None,
) -> DAG:
    """Create the DAG for a spec, ready for its kind to add tasks (use it as a context manager).

    :param loaded: the validated spec
    :param data_intervals: True when tasks need a real ``[start, end)`` window: a cron schedule
        then becomes ``CronDataIntervalTimetable`` instead of Airflow 3's zero-length default
    :param outlets: names of the Assets this DAG produces (listed in its documentation)
    :param extra_params: Params a kind derives from the spec itself (beyond its declared ones)
    """
    spec = loaded.spec
    return DAG(
        dag_id=spec.name,
        description=summary_of(as_written(loaded, "description")) or f"{spec.kind} pipeline",
        doc_md=render_doc_md(loaded, outlets or []),
        schedule=schedule_of(spec, data_intervals=data_intervals),
        start_date=datetime.combine(spec.start_date, datetime.min.time(), tzinfo=ZoneInfo(spec.timezone)),
        catchup=spec.catchup,
        max_active_runs=spec.max_active_runs,
        tags=sorted({"dagfoundry", spec.kind, *spec.tags}),
        default_args=_default_args(spec),
        params={**params_of(spec), **(extra_params or {})},
    )


def summary_of(description: str, limit: int = 200) -> str:
    """Return the one-line summary of a spec's description: its first sentence.

    Lines are joined first (YAML block text wraps mid-sentence). A first sentence longer
    than ``limit`` ends at the last whole word that fits, with an ellipsis.
    """
    text = " ".join(description.split())
    match = re.search(r"[.!?](?=\s|$)", text)
    sentence = text[: match.end()] if match else text
    if len(sentence) <= limit:
        return sentence
    cut = sentence[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def schedule_of(spec: DagSpec, *, data_intervals: bool) -> Any:
    """Turn the spec's schedule into what ``DAG(schedule=...)`` takes."""
    schedule = spec.schedule
    if schedule is None:
        return None
    if isinstance(schedule, tuple):
        assets = [Asset(name) for name in schedule]
        return assets
    if isinstance(schedule, CronOrAssets):
        from airflow.sdk import AssetOrTimeSchedule

        return AssetOrTimeSchedule(
            timetable=_cron_timetable(schedule.cron, spec.timezone, data_intervals=data_intervals),
            assets=[Asset(name) for name in schedule.assets],
        )
    return _cron_timetable(schedule, spec.timezone, data_intervals=data_intervals)


def _cron_timetable(schedule: str, timezone: str, *, data_intervals: bool) -> Any:
    from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable

    expression = PRESET_CRON.get(schedule, schedule)
    if data_intervals:
        return CronDataIntervalTimetable(expression, timezone=timezone)
    return CronTriggerTimetable(expression, timezone=timezone)


def params_of(spec: DagSpec) -> dict[str, Param]:
    """Build the typed manual-trigger form of the kind, with the spec's defaults applied."""
    params = {}
    declarations: dict[str, ParamDeclaration] = spec.param_declarations()
    # Declaration order is the form's order (start before end), not the alphabet.
    for name, declared in declarations.items():
        default = spec.params.get(name, declared.default)
        # The UI marks a field required unless its type admits null; a switch with a default
        # (a checkbox) is never empty, so it stays a plain boolean.
        plain = default is not None and (declared.required or declared.type == "boolean")
        types: Any = declared.type if plain else [declared.type, "null"]
        extra: dict[str, Any] = {"enum": list(declared.enum)} if declared.enum else {}
        if declared.format:
            extra["format"] = declared.format
        if declared.type == "array":
            extra["items"] = {"type": "string"}  # one value per line in the form
        params[name] = Param(default, type=types, description=declared.description, **extra)
    return params


def _default_args(spec: DagSpec) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": spec.owner,
        "retries": spec.retries,
        "retry_delay": spec.retry_delay,
    }
    callbacks: list[Any] = []
    if spec.alerts.email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        callbacks.append(
            SmtpNotifier(
                to=list(spec.alerts.email),
                subject=f"[dagfoundry] {spec.name}: task {{{{ ti.task_id }}}} failed",
            )
        )
    if spec.alerts.webhook_conn_id:
        from dagfoundry.notifiers import WebhookFailureNotifier

        callbacks.append(WebhookFailureNotifier(conn_id=spec.alerts.webhook_conn_id))
    if callbacks:
        args["on_failure_callback"] = callbacks
    return args


def render_doc_md(loaded: LoadedSpec, outlets: list[str]) -> str:
    """Render the DAG's documentation from its spec.

    Values that came from ``${VAR}`` interpolation are shown as written, never as the
    environment's value; specs hold no secrets (they live in Airflow connections).
    """
    spec = loaded.spec
    raw = loaded.document.raw_scalars

    def shown(*key: str | int) -> str:
        return as_written(loaded, *key)

    schedule = spec.schedule
    on_assets = "on Assets: " + ", ".join(f"`{a}`" for a in spec.schedule_assets)
    if isinstance(schedule, CronOrAssets):
        schedule_text = f"`{schedule.cron}`, or {on_assets}"
    else:
        schedule_text = on_assets if isinstance(schedule, tuple) else f"`{schedule}`"
    lines = [
        f"## {spec.name}",
        "",
        as_written(loaded, "description") or f"A `{spec.kind}` pipeline generated by dagfoundry.",
        "",
        "| | |",
        "|---|---|",
        f"| kind | `{spec.kind}` |",
        f"| spec | `{loaded.path}` |",
        f"| owner | {shown('owner')} |",
        f"| schedule | {schedule_text if schedule else 'manual only'} |",
        f"| retries | {spec.retries}, every {spec.retry_delay} |",
        f"| max active runs | {spec.max_active_runs} |",
    ]
    if outlets:
        lines.append(f"| produces | {', '.join(f'`{o}`' for o in outlets)} |")
    declarations = spec.param_declarations()
    if declarations:
        lines += ["", "### Manual trigger parameters", ""]
        for name, declared in declarations.items():
            lines.append(f"- `{name}`: {declared.description}")
    interpolated = sorted(format_key_path(k) for k in raw)
    lines += ["", "### Spec as written", "", "```yaml", loaded.text.rstrip(), "```"]
    if interpolated:
        lines += ["", "Values of " + ", ".join(f"`{k}`" for k in interpolated) + " come from the environment."]
    return "\n".join(lines)


def as_written(loaded: LoadedSpec, *key: str | int) -> str:
    """Return a text value as the spec wrote it: ``${VAR}`` stays, the environment's value never shows."""
    raw = loaded.document.raw_scalars.get(key)
    return raw if raw is not None else str(_value_at(loaded.spec, key))


def _value_at(spec: DagSpec, key: tuple[str | int, ...]) -> Any:
    value: Any = spec
    for part in key:
        value = value[part] if isinstance(part, int) else getattr(value, part)
    return value
