"""The periodic jobs, as configuration: which Temporal Schedules should exist (pure, no I/O).

Built-in defaults: a daily consistency check per entity at staggered hours, after a nightly
catalog reconciliation. A JSON file (`CT_INSIDER_SCHEDULES_PATH` or `--config`) can replace
defaults by name, leave some out, and add backfill windows:

    {"include_defaults": true, "omit": ["check-orders"],
     "schedules": [{"name": "check-customers", "kind": "check-customers", "cron": "0 5 * * *",
                    "input": {"sample": 500}}]}

Each schedule's id is the prefix plus its name (`ct-insider-check-customers`). `plan()`
compares what the configuration asks for with what Temporal holds (by a fingerprint of
everything a schedule is made of) into create / update / unchanged / delete steps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

DEFAULT_PREFIX = "ct-insider-"
# The workflow types schedules start, by name: the schedule need not import them.
CHECK_WORKFLOW = "ConsistencyCheckWorkflow"
BACKFILL_WORKFLOW = "BackfillWorkflow"

ScheduleKind = Literal[
    "check-customers", "check-orders", "check-catalog", "catalog-reconciliation", "backfill"
]
ScheduleName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
PlanAction = Literal["create", "update", "unchanged", "delete"]

# Input fields each kind sets itself; configuration must not contradict them.
_KIND_INPUT: dict[ScheduleKind, dict[str, Any]] = {
    "check-customers": {"entity": "customers"},
    "check-orders": {"entity": "orders"},
    "check-catalog": {"entity": "catalog"},
    "catalog-reconciliation": {"target": "catalog", "catalog_mode": "changes"},
    "backfill": {},
}


class ScheduleConfigError(ValueError):
    """The schedules configuration cannot be used (the message says where and why)."""


class ScheduleConfig(BaseModel):
    """One periodic job as an operator writes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ScheduleName
    kind: ScheduleKind
    cron: str | None = Field(default=None, description="5-field cron (UTC) or @daily etc.")
    every_seconds: float | None = Field(default=None, gt=0, description="a fixed interval")
    # Spreads the start (e.g. several deployments' checks do not hit Insider at once).
    jitter_seconds: float = Field(default=300, ge=0)
    # A run missed while Temporal was down still starts if the server is back this soon.
    catch_up_window_seconds: float = Field(default=3600, ge=10)
    paused: bool = False
    # The workflow input beyond what the kind sets (a check's sample, a backfill's window).
    input: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_spec_and_consistent_input(self) -> ScheduleConfig:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("give exactly one of cron or every_seconds")
        if self.cron is not None:
            fields = self.cron.split()
            if not (self.cron.startswith("@") and len(fields) == 1) and len(fields) != 5:
                raise ValueError(f"cron {self.cron!r} needs 5 fields (minute hour day month dow)")
        for key, value in _KIND_INPUT[self.kind].items():
            if key in self.input and self.input[key] != value:
                raise ValueError(f"input.{key} is {value!r} for kind {self.kind}")
        if self.kind == "backfill" and self.input.get("target") not in (
            "customers",
            "orders",
            "all",
            "catalog",
        ):
            raise ValueError("a backfill needs input.target: customers, orders, all or catalog")
        return self

    @property
    def spec_text(self) -> str:
        return f"cron {self.cron}" if self.cron else f"every {self.every_seconds:g}s"


class SchedulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_defaults: bool = True
    omit: list[ScheduleName] = Field(default_factory=list, description="defaults left out")
    schedules: list[ScheduleConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_known_and_unique(self) -> SchedulesFile:
        names = [s.name for s in self.schedules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"schedule names given twice: {', '.join(twice)}")
        defaults = {s.name for s in DEFAULT_SCHEDULES}
        unknown = sorted(set(self.omit) - defaults)
        if unknown:
            raise ValueError(
                f"omit names no default schedule: {', '.join(unknown)} "
                f"(defaults: {', '.join(sorted(defaults))})"
            )
        return self


DEFAULT_SCHEDULES: tuple[ScheduleConfig, ...] = (
    # Reconcile the catalog first (sends only what differs), then check it and the rest.
    ScheduleConfig(name="catalog-reconciliation", kind="catalog-reconciliation", cron="0 1 * * *"),
    ScheduleConfig(name="check-customers", kind="check-customers", cron="0 2 * * *"),
    ScheduleConfig(name="check-orders", kind="check-orders", cron="0 3 * * *"),
    ScheduleConfig(name="check-catalog", kind="check-catalog", cron="0 4 * * *"),
)


class DesiredSchedule(BaseModel):
    """Everything one Temporal Schedule is made of, as the configuration asks for it."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: ScheduleKind
    workflow: str
    workflow_input: dict[str, Any]
    task_queue: str
    cron: str | None
    every_seconds: float | None
    jitter_seconds: float
    catch_up_window_seconds: float
    paused: bool
    spec_text: str

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything the schedule is made of changes."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


class PlanStep(BaseModel):
    id: str
    action: PlanAction
    kind: str | None = None
    spec: str | None = None


def desired(
    configs: Sequence[ScheduleConfig], *, prefix: str, task_queue: str
) -> list[DesiredSchedule]:
    wanted = []
    for config in configs:
        workflow = (
            BACKFILL_WORKFLOW
            if config.kind in ("catalog-reconciliation", "backfill")
            else (CHECK_WORKFLOW)
        )
        wanted.append(
            DesiredSchedule(
                id=f"{prefix}{config.name}",
                kind=config.kind,
                workflow=workflow,
                workflow_input={**config.input, **_KIND_INPUT[config.kind]},
                task_queue=task_queue,
                cron=config.cron,
                every_seconds=config.every_seconds,
                jitter_seconds=config.jitter_seconds,
                catch_up_window_seconds=config.catch_up_window_seconds,
                paused=config.paused,
                spec_text=config.spec_text,
            )
        )
    return wanted


def effective(file: SchedulesFile) -> list[ScheduleConfig]:
    """The file's schedules, plus the defaults it neither replaces nor omits."""
    named = {s.name for s in file.schedules}
    kept = [
        s
        for s in (DEFAULT_SCHEDULES if file.include_defaults else ())
        if s.name not in named and s.name not in file.omit
    ]
    return [*kept, *file.schedules]


def parse(text: str, source: str) -> list[ScheduleConfig]:
    """The schedules a JSON document configures; ScheduleConfigError says exactly what is wrong."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScheduleConfigError(
            f"{source}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    try:
        return effective(SchedulesFile.model_validate(raw))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "document"
            problems.append(f"{where}: {error['msg']}")
        raise ScheduleConfigError(f"{source}: " + "; ".join(problems)) from None


def load_configs(path: Path | None) -> list[ScheduleConfig]:
    """The configured schedules (the built-in defaults when no file is given)."""
    if path is None:
        return list(DEFAULT_SCHEDULES)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse(text, str(path))


def plan(
    wanted: Sequence[DesiredSchedule], existing: Mapping[str, str | None], *, prefix: str
) -> list[PlanStep]:
    """Steps from what exists (schedule id -> stored fingerprint, None when it has none, e.g.
    made by hand) to what is wanted. Schedules outside the prefix are none of ours."""
    steps = []
    for schedule in wanted:
        action: PlanAction
        if schedule.id not in existing:
            action = "create"
        elif existing[schedule.id] == schedule.fingerprint:
            action = "unchanged"
        else:
            action = "update"
        steps.append(
            PlanStep(id=schedule.id, action=action, kind=schedule.kind, spec=schedule.spec_text)
        )
    names = {s.id for s in wanted}
    for schedule_id in sorted(existing):
        if schedule_id.startswith(prefix) and schedule_id not in names:
            steps.append(PlanStep(id=schedule_id, action="delete"))
    return steps
