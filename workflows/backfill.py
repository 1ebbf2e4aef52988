"""BackfillWorkflow: a resumable, observable historical sync of one entity over a window."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.backfill import BackfillActivities, SyncChunkInput
    from activities.errors import NON_RETRYABLE_TYPES
    from ct_insider.sync.reports import SyncStats
    from ct_insider.sync.window import Window

Entity = Literal["customers"]


class BackfillInput(BaseModel):
    entity: Entity
    window: Window = Field(default_factory=Window)
    batch_size: int = Field(default=1_000, ge=1, le=1_000)
    skip_hook: bool = True
    chunk_seconds: float = Field(default=10.0, gt=0)
    # Continue-as-new well before Temporal's history limits (tests lower it).
    max_chunks_per_run: int = Field(default=500, ge=1)
    # Carried across continue-as-new:
    cursor: str | None = None
    stats: SyncStats = Field(default_factory=SyncStats)
    chunks: int = 0


class BackfillProgress(BaseModel):
    entity: Entity
    window: Window
    status: Literal["running", "completed"]
    cursor: str | None
    chunks: int
    stats: SyncStats


def backfill_workflow_id(entity: str, window: Window) -> str:
    """One ID per entity and window: a second start of the same run attaches to it."""
    return f"backfill-{entity}-{window.slug()}"


@workflow.defn
class BackfillWorkflow:
    def __init__(self) -> None:
        self._progress: BackfillProgress | None = None

    @workflow.run
    async def run(self, params: BackfillInput) -> BackfillProgress:
        progress = BackfillProgress(
            entity=params.entity,
            window=params.window,
            status="running",
            cursor=params.cursor,
            chunks=params.chunks,
            stats=params.stats,
        )
        self._progress = progress
        chunks_this_run = 0
        while True:
            result = await workflow.execute_activity_method(
                BackfillActivities.sync_customer_chunk,
                SyncChunkInput(
                    run_id=workflow.info().workflow_id,
                    window=params.window,
                    after_id=progress.cursor,
                    batch_size=params.batch_size,
                    skip_hook=params.skip_hook,
                    budget_seconds=params.chunk_seconds,
                ),
                start_to_close_timeout=timedelta(seconds=params.chunk_seconds * 6 + 300),
                heartbeat_timeout=timedelta(seconds=120),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(minutes=2),
                    non_retryable_error_types=NON_RETRYABLE_TYPES,
                ),
            )
            progress.stats.add(result.stats)
            progress.cursor = result.cursor
            progress.chunks += 1
            chunks_this_run += 1
            if result.done:
                progress.status = "completed"
                workflow.logger.info(
                    "backfill completed: processed=%d sent=%d rejected=%d",
                    progress.stats.processed,
                    progress.stats.sent,
                    progress.stats.rejected,
                )
                return progress
            if (
                chunks_this_run >= params.max_chunks_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(
                    params.model_copy(
                        update={
                            "cursor": progress.cursor,
                            "stats": progress.stats,
                            "chunks": progress.chunks,
                        }
                    )
                )

    @workflow.query
    def progress(self) -> BackfillProgress | None:
        return self._progress
