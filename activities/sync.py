"""Sync activities: count a window, and sync a time-boxed chunk of it while heartbeating."""

from __future__ import annotations

import time
from datetime import datetime
from functools import partial
from typing import assert_never

import httpx
from pydantic import BaseModel, Field
from temporalio import activity

from activities.base import ConnectorActivities
from activities.errors import as_application_error
from ct_insider import telemetry
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.deadletters import DeadLetterPath, DeadLetterStore
from ct_insider.insider.errors import InsiderError
from ct_insider.logging import get_logger
from ct_insider.resources import REGISTRY, Sender, synced
from ct_insider.resources import Resource as Resource  # re-exported: workflows import it here
from ct_insider.sync.catalog import CatalogMode
from ct_insider.sync.customers import send_customer_batch
from ct_insider.sync.history import HistoryMode
from ct_insider.sync.pipeline import BatchSender, VersionMemory, sync_window
from ct_insider.sync.rejected import dead_lettering, legacy_path_of_lane
from ct_insider.sync.reports import SyncStats
from ct_insider.sync.window import Window

log = get_logger(__name__)

# Ambiguous upsert failures an attempt settles itself before leaving the rest to Temporal's
# retries (with their backoff).
MAX_IN_PROCESS_SETTLEMENTS = 20

# What a chunk pages through, where it is read, with which expansions, and what a page is
# handed to: all from the registry (ct_insider/resources.py).
EXPAND: dict[str, tuple[str, ...]] = {entry.name: entry.expand for entry in REGISTRY}
PATHS: dict[str, str] = {entry.name: entry.endpoint for entry in REGISTRY}


def path_of(resource: Resource) -> str:
    """The commercetools endpoint a resource is read from."""
    return PATHS[resource]


class SyncChunkInput(BaseModel):
    # The workflow id: names the run in logs and keys its in-flight marker.
    lane: str
    entity: Resource
    window: Window
    after_id: str | None = None
    batch_size: int = 1_000
    skip_hook: bool = True
    # Orders older than the live window: their events (with skip_hook) or their profile only.
    history: HistoryMode = "events"
    # Catalog: "full" sends every item again; "changes" only what differs from Insider.
    catalog_mode: CatalogMode = "changes"
    budget_seconds: float = 10.0
    # Delta sync: versions already sent near the previous window's end, and from when on
    # to remember the versions sent in this one.
    known_versions: dict[str, int] = Field(default_factory=dict)
    remember_since: datetime | None = None
    # The delivery path its rejected records are dead-lettered under, set by the workflow
    # (None: a chunk scheduled before workflows passed it).
    path: DeadLetterPath | None = None


class SyncChunkResult(BaseModel):
    stats: SyncStats
    cursor: str | None
    done: bool
    remembered: dict[str, int] = Field(default_factory=dict)


class ChunkHeartbeat(BaseModel):
    """What a retried attempt needs to resume where the crashed one stopped."""

    cursor: str | None
    stats: SyncStats
    remembered: dict[str, int] = Field(default_factory=dict)


class CountInput(BaseModel):
    entity: Resource
    window: Window


def _count_records(params: SyncChunkInput, *attempt: SyncStats) -> None:
    """This attempt's records in the connector's metrics (dead letters count where written)."""
    path = params.path or legacy_path_of_lane(params.lane)
    for stats in attempt:
        telemetry.count_records(path, params.entity, sent=stats.sent, rejected=stats.rejected)


class SyncActivities(ConnectorActivities):
    """Holds the long-lived clients; the worker creates one instance."""

    @activity.defn
    async def count_records(self, params: CountInput) -> int:
        """How many records the window holds now (for the progress bar; may grow later)."""
        query = {"limit": "1", "withTotal": "true"}
        predicate = params.window.predicate()
        if predicate:
            query["where"] = predicate
        try:
            body = await self._ct.get_json(path_of(params.entity), httpx.QueryParams(query))
        except CommercetoolsError as exc:
            raise as_application_error(exc) from exc
        return int(body.get("total") or 0)

    def _sender(self, params: SyncChunkInput) -> BatchSender:
        """The callable of the resource's registry sender (mypy holds every one to a case)."""
        sender = synced(params.entity).sender
        match sender:
            case Sender.CUSTOMERS:
                return partial(
                    send_customer_batch,
                    self._insider,
                    config=self._mapping,
                    skip_hook=params.skip_hook,
                )
            case Sender.ORDERS:
                return partial(
                    self._orders.send_batch,
                    lane=params.lane,
                    skip_hook=params.skip_hook,
                    history=params.history,
                )
            case Sender.ORDERS_OF_PAYMENTS:
                return partial(
                    self._orders.send_for_payments,
                    lane=params.lane,
                    skip_hook=params.skip_hook,
                    history=params.history,
                )
            case Sender.PRODUCTS:
                return partial(self._catalog.send_products, mode=params.catalog_mode)
            case Sender.PRODUCTS_OF_SKUS:
                return self._catalog.send_for_skus
            case Sender.PRODUCTS_OF_CATEGORIES:
                return self._catalog.send_for_categories
            case Sender.VANISHED_PRODUCTS:
                return self._catalog.hide_vanished
            case _:
                assert_never(sender)

    def _dead_lettering(self, params: SyncChunkInput) -> BatchSender:
        """The sender, writing the records it rejects to the dead-letter store."""
        return dead_lettering(
            self._sender(params),
            DeadLetterStore(self._ct),
            resource=params.entity,
            run=params.lane,
            skip_hook=params.skip_hook,
            path=params.path or legacy_path_of_lane(params.lane),
        )

    @activity.defn
    async def sync_chunk(self, params: SyncChunkInput) -> SyncChunkResult:
        info = activity.info()
        resumed = SyncStats()
        after_id = params.after_id
        memory = VersionMemory(params.known_versions, params.remember_since)
        if info.heartbeat_details:
            beat = ChunkHeartbeat.model_validate(info.heartbeat_details[0])
            after_id, resumed = beat.cursor, beat.stats
            memory.remembered.update(beat.remembered)
            log.info(
                "resuming chunk from heartbeat",
                lane=params.lane,
                attempt=info.attempt,
                cursor=after_id,
                processed=resumed.processed,
            )

        # Batches sent by earlier passes of this attempt (a pass ends when an upsert may
        # have been stored: that request is settled at once and the window read on from
        # the last acknowledged batch, without waiting for Temporal's retry backoff).
        passed = SyncStats()
        latest = ChunkHeartbeat(cursor=after_id, stats=SyncStats())

        def heartbeat(stats: SyncStats, cursor: str | None) -> None:
            latest.cursor, latest.stats = cursor, stats
            total = resumed.model_copy(deep=True)
            total.add(passed)
            total.add(stats)
            beat = ChunkHeartbeat(cursor=cursor, stats=total, remembered=memory.remembered)
            activity.heartbeat(beat.model_dump(mode="json"))

        sends_events = synced(params.entity).sender.sends_order_events
        started = time.monotonic()
        settled_in_process = 0
        while True:
            try:
                if sends_events:
                    # A request may have been in flight when this attempt or an earlier one
                    # failed or died.
                    passed.found_in_insider += await self._orders.recover(
                        params.lane, lambda: heartbeat(latest.stats, latest.cursor)
                    )
                outcome = await sync_window(
                    self._ct,
                    path_of(params.entity),
                    self._dead_lettering(params),
                    window=params.window,
                    after_id=latest.cursor,
                    batch_size=params.batch_size,
                    expand=EXPAND[params.entity],
                    memory=memory if params.remember_since or params.known_versions else None,
                    budget_seconds=max(0.0, params.budget_seconds - (time.monotonic() - started)),
                    on_batch=heartbeat,
                )
                if outcome.done and sends_events:
                    await self._orders.finish(params.lane)
                break
            except InsiderError as exc:
                doubt = sends_events and exc.maybe_stored
                if not doubt or settled_in_process >= MAX_IN_PROCESS_SETTLEMENTS:
                    log.error("chunk failed", lane=params.lane, error=str(exc))
                    raise as_application_error(exc) from exc
                settled_in_process += 1
                log.warning("upsert may have been stored; settling it", lane=params.lane)
                passed.add(latest.stats)
                latest.stats = SyncStats()
            except CommercetoolsError as exc:
                log.error("chunk failed", lane=params.lane, error=str(exc))
                raise as_application_error(exc) from exc
        resumed.add(passed)
        resumed.add(outcome.stats)
        _count_records(params, passed, outcome.stats)
        return SyncChunkResult(
            stats=resumed, cursor=outcome.cursor, done=outcome.done, remembered=memory.remembered
        )
