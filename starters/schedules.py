"""`ct-insider schedules apply|list|pause|unpause|delete|trigger`: the periodic jobs as
Temporal Schedules (visible under Schedules in the Temporal UI).

`apply` makes Temporal hold exactly what the configuration names (ct_insider/schedules.py):
every schedule carries a fingerprint of its definition in its action's memo, so applying
the same configuration again changes nothing, a changed one updates only what changed, and
schedules with our prefix that the configuration no longer names are deleted. A schedule
an operator paused stays paused while its definition is unchanged.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.schedules import (
    BACKFILL_WORKFLOW,
    CHECK_WORKFLOW,
    DesiredSchedule,
    PlanStep,
    ScheduleConfigError,
    desired,
    load_configs,
    plan,
)
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    UsageError,
    add_json_flag,
    fail,
    print_json,
    stdout,
    table,
)

# The action memo key holding what `apply` needs to recognise its own schedule.
MEMO_KEY = "ct_insider_schedule"
Action = Literal["pause", "unpause", "delete", "trigger"]


class ScheduleRow(BaseModel):
    id: str
    kind: str | None
    spec: str | None
    paused: bool
    note: str | None
    next_run: datetime | None
    last_run: datetime | None
    last_workflow_id: str | None
    last_outcome: str | None


class ActReport(BaseModel):
    action: Action
    done: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)


def build_schedule(schedule: DesiredSchedule) -> Schedule:
    if schedule.cron is not None:
        spec = ScheduleSpec(
            cron_expressions=[schedule.cron], jitter=timedelta(seconds=schedule.jitter_seconds)
        )
    else:
        every = timedelta(seconds=schedule.every_seconds or 0)
        spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=every)],
            jitter=timedelta(seconds=schedule.jitter_seconds),
        )
    memo = {"fingerprint": schedule.fingerprint, "kind": schedule.kind, "spec": schedule.spec_text}
    return Schedule(
        action=ScheduleActionStartWorkflow(
            schedule.workflow,
            schedule.workflow_input,
            # Temporal appends the scheduled time: ct-insider-check-orders-2026-01-01T03:00:00Z
            id=schedule.id,
            task_queue=schedule.task_queue,
            memo={MEMO_KEY: memo},
        ),
        spec=spec,
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(seconds=schedule.catch_up_window_seconds),
        ),
        state=ScheduleState(
            paused=schedule.paused,
            note="paused by configuration" if schedule.paused else None,
        ),
    )


def validate_inputs(wanted: Sequence[DesiredSchedule]) -> None:
    """Each schedule's workflow input must be one its workflow accepts: a bad one is found
    now (exit 2), not at 3 a.m. when the schedule fires."""
    models: dict[str, type[BaseModel] | None] = {
        BACKFILL_WORKFLOW: _input_model("workflows.backfill", "BackfillInput"),
        CHECK_WORKFLOW: _input_model("workflows.check", "CheckInput"),
    }
    for schedule in wanted:
        model = models.get(schedule.workflow)
        if model is None:
            continue
        try:
            model.model_validate(schedule.workflow_input)
        except ValidationError as exc:
            problems = "; ".join(
                f"input.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ScheduleConfigError(f"schedule {schedule.id}: {problems}") from None


def _input_model(module: str, name: str) -> type[BaseModel] | None:
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None  # that workflow is not part of this build: Temporal checks at start
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


async def describe(client: Client, schedule_id: str) -> ScheduleDescription | None:
    try:
        return await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def memo_of(client: Client, description: ScheduleDescription) -> dict[str, Any]:
    """What `apply` stored on the schedule ({} for one made by other means)."""
    action = description.schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or not action.memo:
        return {}
    raw = action.memo.get(MEMO_KEY)
    if raw is None:
        return {}
    value = (await client.data_converter.decode([raw]))[0] if isinstance(raw, Payload) else raw
    return value if isinstance(value, dict) else {}


async def listed_ids(client: Client, prefix: str) -> list[str]:
    """Our schedules as the visibility store lists them (it may lag a write by a moment)."""
    return sorted(
        [entry.id async for entry in await client.list_schedules() if entry.id.startswith(prefix)]
    )


async def existing_fingerprints(
    client: Client, wanted: Sequence[DesiredSchedule], prefix: str
) -> dict[str, str | None]:
    """Our schedules and their stored fingerprints. The wanted ones are described by id (no
    visibility lag), so applying twice in a row never tries to create one again."""
    found: dict[str, str | None] = {}
    for schedule_id in sorted({s.id for s in wanted} | set(await listed_ids(client, prefix))):
        description = await describe(client, schedule_id)
        if description is not None:
            found[schedule_id] = (await memo_of(client, description)).get("fingerprint")
    return found


async def compute_plan(
    client: Client, wanted: Sequence[DesiredSchedule], prefix: str
) -> list[PlanStep]:
    return plan(wanted, await existing_fingerprints(client, wanted, prefix), prefix=prefix)


async def apply_plan(
    client: Client, steps: Sequence[PlanStep], wanted: Sequence[DesiredSchedule]
) -> None:
    by_id = {s.id: s for s in wanted}
    for step in steps:
        handle = client.get_schedule_handle(step.id)
        if step.action == "create":
            try:
                await client.create_schedule(step.id, build_schedule(by_id[step.id]))
            except ScheduleAlreadyRunningError:  # created meanwhile by someone else
                await _update(client, by_id[step.id])
        elif step.action == "update":
            await _update(client, by_id[step.id])
        elif step.action == "delete":
            await handle.delete()


async def _update(client: Client, schedule: DesiredSchedule) -> None:
    handle = client.get_schedule_handle(schedule.id)
    built = build_schedule(schedule)

    def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=built)

    await handle.update(replace)
    # The configuration's pause state applies to a changed definition.
    description = await handle.describe()
    if description.schedule.state.paused != schedule.paused:
        if schedule.paused:
            await handle.pause(note="paused by configuration")
        else:
            await handle.unpause(note="unpaused by configuration")


async def schedule_rows(client: Client, prefix: str) -> list[ScheduleRow]:
    rows = []
    for schedule_id in await listed_ids(client, prefix):
        description = await describe(client, schedule_id)
        if description is None:  # deleted since the listing
            continue
        memo = await memo_of(client, description)
        info = description.info
        last = info.recent_actions[-1] if info.recent_actions else None
        workflow_id = outcome = None
        if last is not None and isinstance(last.action, ScheduleActionExecutionStartWorkflow):
            workflow_id = last.action.workflow_id
            outcome = await _outcome(client, workflow_id, last.action.first_execution_run_id)
        rows.append(
            ScheduleRow(
                id=schedule_id,
                kind=memo.get("kind"),
                spec=memo.get("spec"),
                paused=description.schedule.state.paused,
                note=description.schedule.state.note,
                next_run=info.next_action_times[0] if info.next_action_times else None,
                last_run=last.started_at if last else None,
                last_workflow_id=workflow_id,
                last_outcome=outcome,
            )
        )
    return rows


async def _outcome(client: Client, workflow_id: str, run_id: str) -> str:
    try:
        described = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError:
        return "unknown"
    return described.status.name if described.status else "unknown"


async def act(
    client: Client, action: Action, names: Sequence[str], every: bool, prefix: str
) -> ActReport:
    """Pause, unpause, delete or trigger the named schedules (a name may leave out the prefix)."""
    report = ActReport(action=action)
    ids = (
        await listed_ids(client, prefix)
        if every
        else [n if n.startswith(prefix) else f"{prefix}{n}" for n in names]
    )
    for schedule_id in ids:
        if await describe(client, schedule_id) is None:
            report.missing.append(schedule_id)
            continue
        handle = client.get_schedule_handle(schedule_id)
        if action == "pause":
            await handle.pause(note="paused with ct-insider schedules pause")
        elif action == "unpause":
            await handle.unpause(note="unpaused with ct-insider schedules unpause")
        elif action == "delete":
            await handle.delete()
        else:
            await handle.trigger()
        report.done.append(schedule_id)
    return report


# --- the command line -----------------------------------------------------------------


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedules = commands.add_parser(
        "schedules",
        help="the periodic jobs (consistency checks, catalog reconciliation) as Temporal Schedules",
        epilog="example: ct-insider schedules apply --dry-run\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = schedules.add_subparsers(dest="action", required=True)
    apply = _subcommand(
        actions,
        "apply",
        "create, update and delete schedules to match the configuration",
        "ct-insider schedules apply --config schedules.json --dry-run",
    )
    apply.add_argument(
        "--config",
        type=Path,
        help="JSON file of schedules (default: CT_INSIDER_SCHEDULES_PATH, else built-in)",
    )
    apply.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    apply.set_defaults(handler=run_apply)
    listing = _subcommand(
        actions,
        "list",
        "our schedules: spec, next run, last run's outcome, paused",
        "ct-insider schedules list --json",
    )
    listing.set_defaults(handler=run_list)
    for name, text in (
        ("pause", "pause"),
        ("unpause", "unpause"),
        ("delete", "delete"),
        ("trigger", "start a run now of"),
    ):
        one = _subcommand(
            actions,
            name,
            f"{text} the named schedules",
            f"ct-insider schedules {name} ct-insider-check-orders",
        )
        one.add_argument("ids", nargs="*", help="schedule ids (the ct-insider- prefix optional)")
        one.add_argument("--all", action="store_true", help=f"{text} every schedule of ours")
        one.set_defaults(handler=run_act)


def _subcommand(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    example: str,
) -> argparse.ArgumentParser:
    parser = actions.add_parser(
        name,
        help=text,
        epilog=f"example: {example}\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_flag(parser)
    return parser


def wanted_schedules(config: Path | None) -> tuple[list[DesiredSchedule], str]:
    """The configured schedules and our id prefix (UsageError when the configuration is bad)."""
    from ct_insider.config import SchedulesSettings, TemporalSettings, load

    settings = load(SchedulesSettings)
    try:
        configs = load_configs(config or settings.path)
        wanted = desired(
            configs, prefix=settings.prefix, task_queue=load(TemporalSettings).task_queue
        )
        validate_inputs(wanted)
    except ScheduleConfigError as exc:
        raise UsageError(f"invalid schedules configuration: {exc}") from None
    return wanted, settings.prefix


async def _client() -> Client:
    from ct_insider.config import TemporalSettings, load
    from ct_insider.temporal import connect

    return await connect(load(TemporalSettings))


async def run_apply(args: argparse.Namespace) -> int:
    wanted, prefix = wanted_schedules(args.config)
    client = await _client()
    steps = await compute_plan(client, wanted, prefix)
    if not args.dry_run:
        await apply_plan(client, steps, wanted)
    if args.json:
        print_json({"dry_run": args.dry_run, "steps": [s.model_dump() for s in steps]})
        return ExitCode.OK
    title = "schedules plan (dry run: nothing changed)" if args.dry_run else "schedules applied"
    rows = [(s.id, s.action, s.kind, s.spec) for s in steps]
    stdout().print(table(title, ("id", "action", "kind", "spec"), rows))
    return ExitCode.OK


async def run_list(args: argparse.Namespace) -> int:
    from ct_insider.config import SchedulesSettings, load

    rows = await schedule_rows(await _client(), load(SchedulesSettings).prefix)
    if args.json:
        print_json([r.model_dump(mode="json") for r in rows])
        return ExitCode.OK
    columns = ("id", "kind", "spec", "paused", "next run", "last run", "last outcome")
    shown = [
        (r.id, r.kind, r.spec, "yes" if r.paused else "no", r.next_run, r.last_run, r.last_outcome)
        for r in rows
    ]
    stdout().print(table("schedules", columns, shown))
    return ExitCode.OK


async def run_act(args: argparse.Namespace) -> int:
    from ct_insider.config import SchedulesSettings, load

    if not args.ids and not args.all:
        raise UsageError(f"{args.action}: name the schedules, or --all")
    if args.ids and args.all:
        raise UsageError(f"{args.action}: name schedules or give --all, not both")
    report = await act(
        await _client(), args.action, args.ids, args.all, load(SchedulesSettings).prefix
    )
    if args.json:
        print_json(report)
    else:
        # Overlap policy skip: a trigger while the schedule's last run still runs starts none.
        aside = " (skipped if its last run is still running)" if args.action == "trigger" else ""
        for schedule_id in report.done:
            stdout().print(f"{args.action}: {schedule_id}{aside}", markup=False, highlight=False)
        if args.all and not report.done:
            stdout().print("no schedules of ours", markup=False, highlight=False)
    for schedule_id in report.missing:
        fail(f"schedules {args.action}: no schedule {schedule_id}")
    return ExitCode.FAILURES if report.missing else ExitCode.OK
