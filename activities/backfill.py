"""Backfill activities: one call syncs a time-boxed chunk and heartbeats its cursor."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import activity

from activities.errors import as_application_error
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderError
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.customers import sync_customers
from ct_insider.sync.reports import SyncStats
from ct_insider.sync.window import Window

log = get_logger(__name__)


class SyncChunkInput(BaseModel):
    run_id: str
    window: Window
    after_id: str | None = None
    batch_size: int = 1_000
    skip_hook: bool = True
    budget_seconds: float = 10.0


class SyncChunkResult(BaseModel):
    stats: SyncStats
    cursor: str | None
    done: bool


class ChunkHeartbeat(BaseModel):
    """What a retried attempt needs to resume where the crashed one stopped."""

    cursor: str | None
    stats: SyncStats


class BackfillActivities:
    """Holds the long-lived clients; the worker creates one instance."""

    def __init__(
        self, ct: CommercetoolsClient, insider: InsiderClient, mapping: MappingConfig
    ) -> None:
        self._ct = ct
        self._insider = insider
        self._mapping = mapping

    @activity.defn
    async def sync_customer_chunk(self, params: SyncChunkInput) -> SyncChunkResult:
        info = activity.info()
        resumed = SyncStats()
        after_id = params.after_id
        if info.heartbeat_details:
            beat = ChunkHeartbeat.model_validate(info.heartbeat_details[0])
            after_id, resumed = beat.cursor, beat.stats
            log.info(
                "resuming chunk from heartbeat",
                run_id=params.run_id,
                attempt=info.attempt,
                cursor=after_id,
                processed=resumed.processed,
            )

        def heartbeat(stats: SyncStats, cursor: str | None) -> None:
            total = resumed.model_copy(deep=True)
            total.add(stats)
            activity.heartbeat(ChunkHeartbeat(cursor=cursor, stats=total).model_dump(mode="json"))

        try:
            outcome = await sync_customers(
                self._ct,
                self._insider,
                self._mapping,
                window=params.window,
                after_id=after_id,
                batch_size=params.batch_size,
                skip_hook=params.skip_hook,
                budget_seconds=params.budget_seconds,
                on_batch=heartbeat,
            )
        except (CommercetoolsError, InsiderError) as exc:
            log.error("chunk failed", run_id=params.run_id, error=str(exc))
            raise as_application_error(exc) from exc
        resumed.add(outcome.stats)
        return SyncChunkResult(stats=resumed, cursor=outcome.cursor, done=outcome.done)
