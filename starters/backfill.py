"""Start a backfill (or attach to the running one) and optionally follow its progress."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

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


def render_phase(phase: EntityProgress, width: int = 30) -> str:
    stats = phase.stats
    if phase.status == "completed":
        fraction = 1.0
    elif phase.total:
        fraction = min(1.0, stats.processed / phase.total)
    else:
        fraction = 0.0
    filled = round(fraction * width)
    total = f"/{phase.total}" if phase.total is not None else ""
    return (
        f"{phase.entity:<13} [{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} "
        f"{stats.processed}{total} processed, sent={stats.sent} skipped={stats.skipped} "
        f"rejected={stats.rejected} failed={stats.failed} "
        f"{stats.records_per_second:,.0f} rec/s cursor={phase.cursor or '-'}"
    )


def render(progress: BackfillProgress) -> str:
    return "\n".join(render_phase(phase) for phase in progress.phases)


async def follow(
    handle: WorkflowHandle[BackfillWorkflow, BackfillProgress],
    out: TextIO = sys.stderr,
    interval: float = 1.0,
) -> BackfillProgress:
    """Redraw the progress bars until the run (and its continue-as-new successors) ends."""
    result_task = asyncio.ensure_future(handle.result())
    drawn = 0
    tty = out.isatty()

    def draw(progress: BackfillProgress) -> None:
        nonlocal drawn
        text = render(progress)
        if tty and drawn:
            out.write(f"\x1b[{drawn}F\x1b[J")  # back to the first bar, clear below
        out.write(text + "\n")
        out.flush()
        drawn = text.count("\n") + 1

    while not result_task.done():
        try:
            progress = await handle.query(BackfillWorkflow.progress)
            if progress is not None:
                draw(progress)
        except Exception:  # noqa: S110 - a query can miss while a run hands over; keep waiting
            pass
        await asyncio.wait([result_task], timeout=interval)
    final = result_task.result()
    draw(final)
    return final


def print_report(progress: BackfillProgress, out: TextIO = sys.stdout) -> None:
    for phase in progress.phases:
        stats = phase.stats
        out.write(
            f"{phase.entity} backfill {phase.status}: processed {stats.processed}, "
            f"sent {stats.sent}, skipped {stats.skipped}, events {stats.events}"
            + (
                f" (+{stats.found_in_insider} found stored after lost answers)"
                if stats.found_in_insider
                else ""
            )
            + f", rejected {stats.rejected}, failed {stats.failed}, warnings {stats.warnings}, "
            f"{stats.records_per_second:,.0f} records/s\n"
        )
        for rejection in stats.rejections:
            out.write(
                f"  rejected {rejection.record_id} ({rejection.stage}): "
                f"{'; '.join(rejection.reasons)}\n"
            )
        if stats.rejected > len(stats.rejections):
            out.write(
                f"  ... and {stats.rejected - len(stats.rejections)} more (see worker logs)\n"
            )
