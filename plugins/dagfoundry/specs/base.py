"""The header every kind's spec shares, and the strict base model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dagfoundry.specs.types import ConnId, CronOrAssets, DagName, Duration, Schedule, TimeZoneName

#: JSON-schema types a manual-trigger parameter may have.
ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]


class RuleViolation(ValueError):
    """A cross-field rule broken at a known key path (model validators raise it to point there).

    :param key_path: path below the model being validated, e.g. ``("connect",)``
    :param message: what is wrong and what is allowed
    """

    def __init__(self, key_path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.key_path = key_path
        self.message = message


class StrictModel(BaseModel):
    """Base of every spec model: unknown keys are errors and specs are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


@dataclass(frozen=True)
class ParamDeclaration:
    """A typed parameter a kind offers on manual trigger (shown in the Airflow UI form).

    :param default: the value when the user changes nothing (a spec may override it)
    :param type: JSON-schema type
    :param description: the form's help text
    :param enum: allowed values, when the parameter is a choice
    :param format: JSON-schema format the form renders (``date`` gives a date picker)
    :param required: whether the form insists on a value; optional ones may be left empty
        (an empty list, an unset date: the kind's documented default applies)
    """

    default: Any
    type: ParamType
    description: str
    enum: tuple[Any, ...] | None = None
    format: str | None = None
    required: bool = False


class AlertsSpec(StrictModel):
    """Where failures are reported. Addresses and endpoints, never credentials."""

    email: tuple[str, ...] = Field(default=(), description="Addresses mailed when a task fails (SMTP connection).")
    webhook_conn_id: ConnId | None = Field(
        default=None, description="Airflow HTTP connection receiving a JSON POST when a task fails."
    )

    @field_validator("email")
    @classmethod
    def _check_addresses(cls, addresses: tuple[str, ...]) -> tuple[str, ...]:
        for address in addresses:
            local, _, domain = address.partition("@")
            if not local or "." not in domain or " " in address:
                raise ValueError(f"{address!r} is not an e-mail address")
        return addresses


class DagSpec(StrictModel):
    """The header shared by every kind: identity, ownership, scheduling, retries, alerts."""

    #: Parameters the kind offers on manual trigger; a spec's ``params`` overrides defaults.
    declared_params: ClassVar[dict[str, ParamDeclaration]] = {}
    #: The most runs of one DAG of this kind at once, and why when it is less than 64.
    max_active_runs_limit: ClassVar[int] = 64
    max_active_runs_reason: ClassVar[str] = ""

    kind: str = Field(description="Which pipeline this spec describes.")
    name: DagName = Field(description="Unique DAG name; becomes the dag_id.")
    description: str = Field(default="", description="One paragraph shown on the DAG's page.")
    owner: str = Field(default="data-platform", min_length=1, description="Team or person who owns the DAG.")
    tags: tuple[str, ...] = Field(default=(), description="Extra tags; the kind is always a tag.")
    schedule: Schedule = Field(
        default=None,
        description="A cron expression or preset (@daily...), a list of Asset names (runs when all update), "
        "{cron, assets} (either starts a run), or null.",
    )
    timezone: TimeZoneName = Field(
        default="UTC",
        description="Time zone of the cron schedule and start_date (IANA name); runs follow daylight saving time.",
    )
    start_date: date = Field(default=date(2025, 1, 1), description="First date the schedule covers (in timezone).")
    catchup: bool = Field(default=False, description="Create runs for past intervals since start_date.")
    retries: int = Field(default=2, ge=0, le=20, description="Retries per task.")
    retry_delay: Duration = Field(default=timedelta(minutes=5), description="Wait between retries ('5m', '30s').")
    max_active_runs: int = Field(default=1, ge=1, le=64, description="Runs of this DAG at once.")
    alerts: AlertsSpec = Field(default_factory=AlertsSpec, description="Failure notifications.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Defaults of the kind's manual-trigger parameters."
    )

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        for tag in tags:
            if not tag or len(tag) > 100:
                raise ValueError(f"tag {tag!r} must be 1-100 characters")
        return tags

    @field_validator("max_active_runs")
    @classmethod
    def _check_max_active_runs(cls, runs: int) -> int:
        limit = cls.max_active_runs_limit
        if runs > limit:
            bound = "must be 1" if limit == 1 else f"must be at most {limit}"
            raise ValueError(f"{bound}: {cls.max_active_runs_reason}" if cls.max_active_runs_reason else bound)
        return runs

    @field_validator("params")
    @classmethod
    def _check_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(cls.declared_params))
        if unknown:
            allowed = ", ".join(sorted(cls.declared_params)) or "none"
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; this kind offers: {allowed}")
        for name, value in params.items():
            declared = cls.declared_params[name]
            if not _matches_type(value, declared.type):
                raise ValueError(f"parameter {name!r}: expected {declared.type}, found {value!r}")
        return params

    def param_declarations(self) -> dict[str, ParamDeclaration]:
        """Return the manual-trigger parameters this spec's form offers, in form order.

        The kind's :attr:`declared_params` by default; a kind narrows them per spec (the CDC
        actions depend on the mode), so the form never offers what the spec cannot do.
        """
        return self.declared_params

    def produced_assets(self) -> list[str] | None:
        """Return the names of the Assets this spec's DAG emits; None when the kind does not say.

        Cross-spec checks use it: a schedule on an Asset of a dagfoundry namespace that no
        spec produces is an error. Every kind should override it.
        """
        return None

    @property
    def is_time_scheduled(self) -> bool:
        """Whether the schedule is a cron expression or preset (backfills need one)."""
        return isinstance(self.schedule, str | CronOrAssets)

    @property
    def schedule_assets(self) -> tuple[str, ...]:
        """Return the Asset names the schedule waits for (none for cron-only or manual schedules)."""
        if isinstance(self.schedule, CronOrAssets):
            return self.schedule.assets
        return self.schedule if isinstance(self.schedule, tuple) else ()


def _matches_type(value: Any, expected: ParamType) -> bool:
    checks: dict[str, tuple[type, ...]] = {
        "string": (str,),
        "integer": (int,),
        "number": (int, float),
        "boolean": (bool,),
        "array": (list, tuple),
        "object": (dict,),
    }
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, checks[expected]) or value is None
