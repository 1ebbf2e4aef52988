"""Start a backfill (or attach to the running one) and optionally follow its progress."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError

from ct_insider.resources import BACKFILL_CHOICES
from ct_insider.sync.history import HISTORY_MODES
from ct_insider.sync.window import Window
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    UsageError,
    add_json_flag,
    report_run,
    table,
    timestamp,
)
from workflows.backfill import (
    BackfillInput,
    BackfillProgress,
    BackfillWorkflow,
    EntityProgress,
    backfill_workflow_id,
)


async def start_backfill(
    client: Client, task_queue: str, params: BackfillInput
) -> WorkflowHandle[BackfillWorkflow, BackfillProgress]:
    """Start the run for this target and window; if it is already running, attach to it."""
    return await client.start_workflow(
        BackfillWorkflow.run,
        params,
        id=backfill_workflow_id(params),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A finished run of the same window may be started again (e.g. after fixing data);
        # the delivery ledger keeps its order events from going out a second time.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


def render_phase(phase: EntityProgress) -> str:
    """One line of a phase's progress (logs, non-terminal output)."""
    stats = phase.stats
    total = f"/{phase.total}" if phase.total is not None else ""
    return (
        f"{phase.entity} {phase.status}: {stats.processed}{total} processed, sent={stats.sent} "
        f"skipped={stats.skipped} rejected={stats.rejected} failed={stats.failed} "
        f"{stats.records_per_second:,.0f} rec/s cursor={phase.cursor or '-'}"
    )


async def follow(
    handle: WorkflowHandle[BackfillWorkflow, BackfillProgress],
    out: TextIO = sys.stderr,
    interval: float = 1.0,
) -> BackfillProgress:
    """Show progress until the run (and its continue-as-new successors) ends: progress bars
    on a terminal, a line per phase whenever it changed otherwise."""
    console = Console(file=out)
    result_task = asyncio.ensure_future(handle.result())

    async def polled() -> AsyncIterator[BackfillProgress]:
        while not result_task.done():
            try:
                progress = await handle.query(BackfillWorkflow.progress)
                if progress is not None:
                    yield progress
            except RPCError:  # a query can miss while a run hands over; keep waiting
                pass
            await asyncio.wait([result_task], timeout=interval)
        yield result_task.result()

    if console.is_terminal:
        columns = (
            TextColumn("{task.description:<13}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as bars:
            tasks: dict[str, TaskID] = {}
            async for progress in polled():
                for phase in progress.phases:
                    if phase.entity not in tasks:
                        tasks[phase.entity] = bars.add_task(phase.entity, total=None, detail="")
                    stats = phase.stats
                    done = phase.status == "completed"
                    bars.update(
                        tasks[phase.entity],
                        total=stats.processed if done else phase.total,
                        completed=stats.processed,
                        detail=f"sent {stats.sent} rejected {stats.rejected} "
                        f"{stats.records_per_second:,.0f}/s",
                    )
    else:
        shown: dict[str, str] = {}
        async for progress in polled():
            for phase in progress.phases:
                line = render_phase(phase)
                if shown.get(phase.entity) != line and phase.status != "pending":
                    shown[phase.entity] = line
                    console.print(line, markup=False, highlight=False)
    return result_task.result()


def report_lines(progress: BackfillProgress) -> list[str]:
    """The outcome as plain lines (logs, pipes), one per phase and per reported rejection."""
    lines = []
    for phase in progress.phases:
        stats = phase.stats
        found = (
            f" (+{stats.found_in_insider} found stored after lost answers)"
            if stats.found_in_insider
            else ""
        )
        lines.append(
            f"{phase.entity} backfill {phase.status}: processed {stats.processed}, "
            f"sent {stats.sent}, skipped {stats.skipped}, events {stats.events}{found}, "
            f"rejected {stats.rejected}, failed {stats.failed}, warnings {stats.warnings}, "
            f"{stats.records_per_second:,.0f} records/s"
        )
        lines.extend(
            f"  rejected {rejection.record_id} ({rejection.stage}): {'; '.join(rejection.reasons)}"
            for rejection in stats.rejections
        )
        if stats.rejected > len(stats.rejections):
            lines.append(
                f"  ... and {stats.rejected - len(stats.rejections)} more (ct-insider dlq list)"
            )
    return lines


def print_report(progress: BackfillProgress, out: TextIO = sys.stdout) -> None:
    """A table on a terminal, plain lines otherwise."""
    console = Console(file=out, soft_wrap=True)
    if not console.is_terminal:
        for line in report_lines(progress):
            console.print(line, markup=False, highlight=False)
        return
    columns = "phase status processed sent skipped events found-stored rejected failed warnings"
    rows = [
        (
            phase.entity,
            phase.status,
            phase.stats.processed,
            phase.stats.sent,
            phase.stats.skipped,
            phase.stats.events,
            phase.stats.found_in_insider,
            phase.stats.rejected,
            phase.stats.failed,
            phase.stats.warnings,
            f"{phase.stats.records_per_second:,.0f}",
        )
        for phase in progress.phases
    ]
    title = f"{progress.target} backfill {progress.status}"
    console.print(table(title, [*columns.split(), "records/s"], rows))
    for line in report_lines(progress):
        if line.startswith("  "):
            console.print(line, markup=False, highlight=False)


def outcome(progress: BackfillProgress) -> ExitCode:
    stats = progress.stats
    return ExitCode.FAILURES if stats.rejected or stats.failed else ExitCode.OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="start (or attach to) a historical backfill",
        epilog="example: ct-insider backfill all --since 2025-01-01T00:00:00Z --wait\n"
        + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backfill.add_argument("target", choices=BACKFILL_CHOICES)
    backfill.add_argument("--since", type=timestamp, help="lastModifiedAt lower bound (inclusive)")
    backfill.add_argument("--until", type=timestamp, help="lastModifiedAt upper bound (exclusive)")
    backfill.add_argument("--batch-size", type=int, default=1_000)
    backfill.add_argument(
        "--history",
        choices=HISTORY_MODES,
        default="events",
        help="orders older than the live window (orders.live_window_hours): their events, "
        "sent without starting journeys (default), or their profile attributes only",
    )
    backfill.add_argument("--wait", action="store_true", help="follow progress until it finishes")
    add_json_flag(backfill)
    backfill.set_defaults(handler=run_backfill)


async def run_backfill(args: argparse.Namespace) -> int:
    """`backfill` and `sync catalog`: start (or attach), and with --wait report the outcome."""
    from ct_insider.config import TemporalSettings, load
    from ct_insider.temporal import connect
    from starters.watch import require_search_attributes

    temporal = load(TemporalSettings)
    try:
        params = BackfillInput(
            target=args.target,
            window=Window(since=getattr(args, "since", None), until=getattr(args, "until", None)),
            batch_size=getattr(args, "batch_size", 1_000),
            catalog_mode="full" if getattr(args, "full", True) else "changes",
            history=getattr(args, "history", "events"),
        )
    except ValueError as exc:
        raise UsageError(f"invalid backfill: {exc}") from None
    client = await connect(temporal)
    await require_search_attributes(client)
    handle = await start_backfill(client, temporal.task_queue, params)
    final = await report_run(
        client,
        handle,
        "backfill",
        args,
        result_key="progress",
        show=print_report,
        follow=lambda: follow(handle),
    )
    return ExitCode.OK if final is None else outcome(final)
