"""BackfillWorkflow: a resumable, observable historical sync of customers, orders or both."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.sync import Resource
    from ct_insider import resources
    from ct_insider.search_attributes import PATCH_ID, Outcome, outcome_update, run_updates
    from ct_insider.sync.catalog import CatalogMode
    from ct_insider.sync.history import HistoryMode
    from ct_insider.sync.reports import SyncStats
    from ct_insider.sync.watermarks import CLOCK_SKEW_ALLOWANCE
    from ct_insider.sync.window import Window
    from workflows.chunks import count_window, sync_chunk
    from workflows.watermarks import leave_watermark

# Each target's phases, from the registry (ct_insider/resources.py): `all` is customers,
# then orders (their profiles carry the attributes the orders' events then join); the
# catalog target is the full catalog sync (every published product, every market), then a
# sweep that hides what Insider still shows of products deleted meanwhile.
BackfillTarget = resources.BackfillTarget
PHASES: dict[str, list[Resource]] = {
    target: list(phases) for target, phases in resources.BACKFILL_PHASES.items()
}


class EntityProgress(BaseModel):
    entity: Resource
    status: Literal["pending", "running", "completed"] = "pending"
    cursor: str | None = None
    chunks: int = 0
    # Records in the window when the phase started (for the progress bar).
    total: int | None = None
    # When the phase started reading (workflow time): what changed after may have been
    # missed by its pages, so a delta started after the backfill starts here.
    read_from: datetime | None = None
    stats: SyncStats = Field(default_factory=SyncStats)


class BackfillInput(BaseModel):
    target: BackfillTarget
    window: Window = Field(default_factory=Window)
    batch_size: int = Field(default=1_000, ge=1, le=1_000)
    # Historical data must not fire live journeys.
    skip_hook: bool = True
    # Orders older than the live window: "events" (sent with skip_hook) or "attributes"
    # (their profile only, no event): ct_insider/sync/history.py.
    history: HistoryMode = "events"
    # Catalog only: "full" sends every item again; "changes" sends what differs from Insider
    # (a reconciliation: an unchanged catalog sends nothing).
    catalog_mode: CatalogMode = "full"
    chunk_seconds: float = Field(default=10.0, gt=0)
    # How long a silent worker is trusted before its chunk moves to another one.
    heartbeat_seconds: float = Field(default=60.0, gt=0)
    # Continue-as-new well before Temporal's history limits (tests lower it).
    max_chunks_per_run: int = Field(default=500, ge=1)
    # Carried across continue-as-new:
    phases: list[EntityProgress] | None = None


class BackfillProgress(BaseModel):
    target: BackfillTarget
    window: Window
    status: Literal["running", "completed"]
    phases: list[EntityProgress]

    @property
    def stats(self) -> SyncStats:
        total = SyncStats()
        for phase in self.phases:
            total.add(phase.stats)
        return total


def backfill_workflow_id(params: BackfillInput) -> str:
    """One ID per target and window: a second start of the same run attaches to it."""
    name: str = params.target
    if params.target == "catalog":
        name = f"catalog-{params.catalog_mode}"
    elif params.history == "attributes":
        name = f"{name}-profiles"  # not the same run as an events backfill of the window
    return f"backfill-{name}-{params.window.slug()}"


@workflow.defn
class BackfillWorkflow:
    def __init__(self) -> None:
        self._progress: BackfillProgress | None = None

    @workflow.run
    async def run(self, params: BackfillInput) -> BackfillProgress:
        phases = params.phases or [EntityProgress(entity=e) for e in PHASES[params.target]]
        progress = BackfillProgress(
            target=params.target, window=params.window, status="running", phases=phases
        )
        self._progress = progress
        # Runs started before backfills set search attributes replay without the upserts.
        searchable = workflow.patched(PATCH_ID)
        if searchable:
            workflow.upsert_search_attributes(run_updates("backfill", params.target))
        workflow.set_current_details(self._details(progress))
        try:
            await self._run_phases(params, progress)
        except FailureError:
            if searchable:
                workflow.upsert_search_attributes(outcome_update("failed"))
            raise
        progress.status = "completed"
        workflow.set_current_details(self._details(progress))
        if searchable:
            outcome: Outcome = "rejections" if progress.stats.rejected else "completed"
            workflow.upsert_search_attributes(outcome_update(outcome))
        return progress

    async def _run_phases(self, params: BackfillInput, progress: BackfillProgress) -> None:
        chunks_this_run = 0
        for phase in progress.phases:
            if phase.status == "completed":
                continue
            if phase.total is None:  # the phase starts: a run continued-as-new has both
                phase.read_from = workflow.now()
                phase.total = await count_window(phase.entity, params.window)
            phase.status = "running"
            while phase.status != "completed":
                if (
                    chunks_this_run >= params.max_chunks_per_run
                    or workflow.info().is_continue_as_new_suggested()
                ):
                    workflow.continue_as_new(params.model_copy(update={"phases": progress.phases}))
                result = await sync_chunk(
                    path="catalog" if params.target == "catalog" else "backfill",
                    entity=phase.entity,
                    window=params.window,
                    cursor=phase.cursor,
                    batch_size=params.batch_size,
                    skip_hook=params.skip_hook,
                    chunk_seconds=params.chunk_seconds,
                    heartbeat_seconds=params.heartbeat_seconds,
                    catalog_mode=params.catalog_mode,
                    history=params.history,
                )
                phase.stats.add(result.stats)
                phase.cursor = result.cursor
                phase.chunks += 1
                chunks_this_run += 1
                if result.done:
                    phase.status = "completed"
                workflow.set_current_details(self._details(progress))
            workflow.logger.info(
                "%s backfill completed: processed=%d sent=%d rejected=%d",
                phase.entity,
                phase.stats.processed,
                phase.stats.sent,
                phase.stats.rejected,
            )
            await self._leave_watermark(params, progress, phase)

    @staticmethod
    async def _leave_watermark(
        params: BackfillInput, progress: BackfillProgress, completed: EntityProgress
    ) -> None:
        """Once every phase of a delta entity completed, its delta may start where the
        earliest of them started reading (less the clock skew allowance: lastModifiedAt is
        commercetools' clock, ours is the workflow's). Only a window open to "now" covers
        everything before that moment: a backfill with --until leaves nothing; one with
        --since does not move a stored watermark older than its --since."""
        entity = resources.synced(completed.entity).delta
        if entity is None or params.window.until is not None:
            return
        phases = [p for p in progress.phases if resources.synced(p.entity).delta == entity]
        starts = [p.read_from for p in phases if p.status == "completed"]
        if len(starts) < len(phases) or None in starts:
            return  # a phase still to run (or one started before read_from was kept)
        earliest = min(start for start in starts if start is not None)
        await leave_watermark(entity, earliest - CLOCK_SKEW_ALLOWANCE, params.window.since)

    @staticmethod
    def _details(progress: BackfillProgress) -> str:
        """Shown as "Current details" in the Temporal UI (like the delta sync's)."""
        lines = [f"**{progress.target} backfill {progress.status}**"]
        if progress.window.since or progress.window.until:
            lines.append(f"window: {progress.window.slug()}")
        for phase in progress.phases:
            stats = phase.stats
            total = f" of {phase.total}" if phase.total is not None else ""
            lines.append(
                f"{phase.entity} {phase.status}: processed {stats.processed}{total}, sent "
                f"{stats.sent}, skipped {stats.skipped}, rejected {stats.rejected} "
                f"(ct-insider dlq list), chunks {phase.chunks}"
            )
        return "\n\n".join(lines)

    @workflow.query
    def progress(self) -> BackfillProgress | None:
        return self._progress
