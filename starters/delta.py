"""Start the long-running delta sync workflows and show where they are."""

from __future__ import annotations

import sys
from typing import TextIO

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from workflows.delta import DeltaStatus, DeltaSyncInput, DeltaSyncWorkflow, delta_workflow_id

DELTA_ENTITIES = ("customers", "orders", "catalog")


async def start_delta(
    client: Client, task_queue: str, params: DeltaSyncInput
) -> WorkflowHandle[DeltaSyncWorkflow, None]:
    """One delta workflow per entity: starting it again attaches to the running one."""
    return await client.start_workflow(
        DeltaSyncWorkflow.run,
        params,
        id=delta_workflow_id(params.entity),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def delta_status(client: Client, entity: str) -> DeltaStatus | None:
    """The running delta workflow's status, or None when it is not running."""
    handle = client.get_workflow_handle(delta_workflow_id(entity))
    try:
        return await handle.query(DeltaSyncWorkflow.status)
    except RPCError:
        return None


def print_status(entity: str, status: DeltaStatus | None, out: TextIO = sys.stdout) -> None:
    if status is None:
        out.write(f"{entity} delta sync: not running\n")
        return
    watermark = status.watermark.isoformat() if status.watermark else "-"
    out.write(
        f"{entity} delta sync: watermark {watermark}, {status.windows} windows, "
        f"sent {status.totals.sent}, events {status.totals.events}, "
        f"rejected {status.totals.rejected}\n"
    )
    if status.last_run is not None:
        run = status.last_run
        out.write(
            f"  last window {run.window.slug()}: processed {run.stats.processed}, "
            f"sent {run.stats.sent}, skipped {run.stats.skipped}, "
            f"rejected {run.stats.rejected}\n"
        )
