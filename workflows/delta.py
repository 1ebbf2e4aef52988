"""DeltaSyncWorkflow: a long-running sync of what changed, one window per durable timer tick.

Each window reads records whose lastModifiedAt falls in
    [watermark - overlap, now - safety_margin)
The safety margin leaves time for writes that commercetools timestamped but had not yet
committed; the overlap re-reads the previous window's tail in case one slipped past it.
Re-reading costs nothing: records whose version was already sent are skipped, and order
events are checked against the delivery ledger, so the overlap never sends an event twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.sync import Resource
    from ct_insider import resources
    from ct_insider.search_attributes import PATCH_ID, Outcome, outcome_update, run_updates
    from ct_insider.sync.reports import SyncStats
    from ct_insider.sync.window import Window
    from workflows.chunks import sync_chunk
    from workflows.watermarks import (
        NO_WATERMARK_ERROR,
        NO_WATERMARK_REFUSED_PATCH,
        no_watermark_reason,
        store_watermark,
        stored_watermark,
    )


# Each entity's passes per window, from the registry (ct_insider/resources.py): orders
# also read payments (a refund changes the payment, not its order); the catalog reads
# products, inventory, standalone prices and categories.
DeltaEntity = resources.DeltaEntity
PASSES: dict[str, tuple[Resource, ...]] = resources.DELTA_PASSES


class DeltaRun(BaseModel):
    window: Window
    started_at: datetime
    finished_at: datetime
    stats: SyncStats


class DeltaSyncInput(BaseModel):
    entity: DeltaEntity
    interval_seconds: float = Field(default=60.0, gt=0)
    safety_margin_seconds: float = Field(default=15.0, ge=0)
    overlap_seconds: float = Field(default=60.0, ge=0)
    batch_size: int = Field(default=1_000, ge=1, le=1_000)
    chunk_seconds: float = Field(default=10.0, gt=0)
    heartbeat_seconds: float = Field(default=60.0, gt=0)
    # Live changes should fire journeys, unlike a backfill.
    skip_hook: bool = False
    max_windows_per_run: int = Field(default=200, ge=1)
    # Where to start when first launched (None: the stored watermark a previous run or a
    # completed backfill left; with none stored the run fails, saying what to pass);
    # carried across continue-as-new:
    watermark: datetime | None = None
    known_versions: dict[str, int] = Field(default_factory=dict)
    windows: int = 0
    totals: SyncStats = Field(default_factory=SyncStats)
    last_run: DeltaRun | None = None


class DeltaStatus(BaseModel):
    entity: DeltaEntity
    watermark: datetime | None
    windows: int
    totals: SyncStats
    last_run: DeltaRun | None
    next_run_at: datetime | None


def _rejected(run: DeltaRun | None) -> bool:
    return run is not None and run.stats.rejected > 0


def delta_workflow_id(entity: str) -> str:
    return f"delta-{entity}"


@workflow.defn
class DeltaSyncWorkflow:
    def __init__(self) -> None:
        self._status: DeltaStatus | None = None

    @workflow.run
    async def run(self, params: DeltaSyncInput) -> None:
        state = params.model_copy(deep=True)
        status = DeltaStatus(
            entity=state.entity,
            watermark=state.watermark,
            windows=state.windows,
            totals=state.totals,
            last_run=state.last_run,
            next_run_at=None,
        )
        self._status = status
        # Runs started before delta syncs set search attributes replay without the upserts.
        searchable = workflow.patched(PATCH_ID)
        shown: Outcome = "running"
        if searchable:
            workflow.upsert_search_attributes(run_updates("delta", state.entity))
        margin = timedelta(seconds=state.safety_margin_seconds)
        overlap = timedelta(seconds=state.overlap_seconds)
        if state.watermark is None:
            # Started again after a failure or termination: resume where the last run got
            # to; first started after a backfill: where the backfill started reading (None
            # only when neither ever completed).
            state.watermark = await stored_watermark(state.entity)
        for _ in range(state.max_windows_per_run):
            started = workflow.now()
            until = started - margin
            if state.watermark is None:
                if workflow.patched(NO_WATERMARK_REFUSED_PATCH):
                    # "From now on" silently loses what changed since the backfill read
                    # its pages: nothing says where to start, so say what would.
                    if searchable:
                        workflow.upsert_search_attributes(outcome_update("failed"))
                    raise ApplicationError(
                        no_watermark_reason(state.entity),
                        type=NO_WATERMARK_ERROR,
                        non_retryable=True,
                    )
                state.watermark = until  # (runs from before the patch: from now on)
                await store_watermark(state.entity, until)  # a restart resumes from here
            if until > state.watermark:
                window = Window(since=state.watermark - overlap, until=until)
                stats, remembered = await self._sync(state, window, remember_since=until - overlap)
                state.known_versions = remembered
                await store_watermark(state.entity, until)
                state.watermark = until
                state.windows += 1
                state.totals.add(stats)
                state.last_run = DeltaRun(
                    window=window, started_at=started, finished_at=workflow.now(), stats=stats
                )
            status.watermark, status.windows = state.watermark, state.windows
            status.totals, status.last_run = state.totals, state.last_run
            status.next_run_at = workflow.now() + timedelta(seconds=state.interval_seconds)
            workflow.set_current_details(self._details(status))
            # "rejections" while the last window refused records (they are dead letters).
            outcome: Outcome = "rejections" if _rejected(state.last_run) else "running"
            if searchable and outcome != shown:
                workflow.upsert_search_attributes(outcome_update(outcome))
                shown = outcome
            if workflow.info().is_continue_as_new_suggested():
                break
            await workflow.sleep(timedelta(seconds=state.interval_seconds))
        workflow.continue_as_new(state)

    async def _sync(
        self, state: DeltaSyncInput, window: Window, remember_since: datetime
    ) -> tuple[SyncStats, dict[str, int]]:
        stats = SyncStats()
        remembered: dict[str, int] = {}
        for resource in PASSES[state.entity]:
            cursor: str | None = None
            done = False
            while not done:
                result = await sync_chunk(
                    path="delta",
                    entity=resource,
                    window=window,
                    cursor=cursor,
                    batch_size=state.batch_size,
                    skip_hook=state.skip_hook,
                    chunk_seconds=state.chunk_seconds,
                    heartbeat_seconds=state.heartbeat_seconds,
                    known_versions=state.known_versions,
                    remember_since=remember_since,
                )
                stats.add(result.stats)
                remembered.update(result.remembered)
                cursor, done = result.cursor, result.done
        return stats, remembered

    @staticmethod
    def _details(status: DeltaStatus) -> str:
        """Shown as "Current details" in the Temporal UI."""
        lines = [
            f"**{status.entity} delta sync**",
            f"watermark: {status.watermark.isoformat() if status.watermark else '-'}",
            f"windows synced: {status.windows}",
        ]
        if status.last_run is not None:
            run = status.last_run.stats
            lines.append(
                f"last window: processed {run.processed}, sent {run.sent}, skipped "
                f"{run.skipped}, rejected {run.rejected}, events {run.events}"
            )
        return "\n\n".join(lines)

    @workflow.query
    def status(self) -> DeltaStatus | None:
        return self._status
