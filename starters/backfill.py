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
    backfill_workflow_id,
)


async def start_backfill(
    client: Client, task_queue: str, params: BackfillInput
) -> WorkflowHandle[BackfillWorkflow, BackfillProgress]:
    """Start the run for this entity and window; if it is already running, attach to it."""
    return await client.start_workflow(
        BackfillWorkflow.run,
        params,
        id=backfill_workflow_id(params.entity, params.window),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # A finished run of the same window may be started again (e.g. after fixing data).
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


def render(progress: BackfillProgress, width: int = 30) -> str:
    stats = progress.stats
    done = progress.status == "completed"
    spinner_fill = width if done else min(width - 1, progress.chunks % width)
    bar = "#" * spinner_fill + "." * (width - spinner_fill)
    return (
        f"[{bar}] {progress.entity} {progress.status}: processed={stats.processed} "
        f"sent={stats.sent} rejected={stats.rejected} failed={stats.failed} "
        f"{stats.records_per_second:,.0f} rec/s cursor={progress.cursor or '-'}"
    )


async def follow(
    handle: WorkflowHandle[BackfillWorkflow, BackfillProgress],
    out: TextIO = sys.stderr,
    interval: float = 1.0,
) -> BackfillProgress:
    """Print a progress line until the run (including its continue-as-new successors) ends."""
    result_task = asyncio.ensure_future(handle.result())
    while not result_task.done():
        try:
            progress = await handle.query(BackfillWorkflow.progress)
            if progress is not None:
                out.write("\r" + render(progress))
                out.flush()
        except Exception:  # noqa: S110 - a query can miss while a run hands over; keep waiting
            pass
        await asyncio.wait([result_task], timeout=interval)
    final = result_task.result()
    out.write("\r" + render(final) + "\n")
    return final


def print_report(progress: BackfillProgress, out: TextIO = sys.stdout) -> None:
    stats = progress.stats
    out.write(
        f"{progress.entity} backfill {progress.status}: processed {stats.processed}, sent {stats.sent}, "
        f"rejected {stats.rejected}, failed {stats.failed}, warnings {stats.warnings}, "
        f"{stats.records_per_second:,.0f} records/s\n"
    )
    for rejection in stats.rejections:
        out.write(
            f"  rejected {rejection.record_id} ({rejection.stage}): {'; '.join(rejection.reasons)}\n"
        )
    if stats.rejected > len(stats.rejections):
        out.write(f"  ... and {stats.rejected - len(stats.rejections)} more (see worker logs)\n")
