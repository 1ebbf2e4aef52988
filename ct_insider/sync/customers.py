"""Customer sync: page customers in id order, map them, upsert them to Insider in batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.models import Customer
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import User
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import map_customer
from ct_insider.sync.reports import Rejection, SyncStats
from ct_insider.sync.window import Window

log = get_logger(__name__)
T = TypeVar("T")

CUSTOMER_EXPAND = ("customerGroup",)


@dataclass(frozen=True)
class RawBatch:
    records: list[dict[str, Any]]
    cursor: str | None  # the last id of this batch; None when nothing follows


async def raw_batches(
    ct: CommercetoolsClient,
    resource: str,
    window: Window,
    after_id: str | None,
    batch_size: int,
    expand: tuple[str, ...] = (),
) -> AsyncIterator[RawBatch]:
    """Group commercetools pages into batches of `batch_size` records, resumable by cursor."""
    pending: list[dict[str, Any]] = []
    async for page in ct.pages(
        resource, where=window.predicate(), after_id=after_id, expand=expand
    ):
        pending.extend(page.results)
        while len(pending) >= batch_size:
            batch, pending = pending[:batch_size], pending[batch_size:]
            more = bool(pending) or not page.is_last
            yield RawBatch(batch, str(batch[-1]["id"]) if more else None)
    if pending:
        yield RawBatch(pending, None)


async def prefetched(source: AsyncIterator[T], depth: int = 1) -> AsyncIterator[T]:
    """Read ahead of the consumer, so commercetools reads overlap Insider writes."""
    queue: asyncio.Queue[tuple[bool, T | Exception | None]] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            async for item in source:
                await queue.put((True, item))
            await queue.put((False, None))
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put((False, exc))
        # CancelledError is not caught: the consumer cancels us when it stops early.

    task = asyncio.create_task(produce())
    try:
        while True:
            has_item, item = await queue.get()
            if not has_item:
                if isinstance(item, Exception):
                    raise item
                return
            yield item  # type: ignore[misc]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def send_customer_batch(
    insider: InsiderClient,
    records: list[dict[str, Any]],
    config: MappingConfig,
    *,
    skip_hook: bool,
) -> SyncStats:
    """Map and upsert one batch; every record ends up counted as sent or rejected."""
    stats = SyncStats(processed=len(records))
    users: list[User] = []
    sources: list[str] = []
    for raw in records:
        record_id = str(raw.get("id", "?"))
        try:
            customer = Customer.model_validate(raw)
        except ValidationError as exc:
            reasons = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            stats.reject(Rejection(record_id=record_id, stage="mapping", reasons=reasons))
            log.warning("customer rejected", customer_id=record_id, reasons=reasons)
            continue
        mapped = map_customer(customer, config)
        if mapped.warnings:
            stats.warnings += len(mapped.warnings)
            log.warning("customer values dropped", customer_id=record_id, warnings=mapped.warnings)
        if mapped.user is None:
            reason = mapped.rejection or "not mappable"
            stats.reject(Rejection(record_id=record_id, stage="mapping", reasons=[reason]))
            log.warning("customer rejected", customer_id=record_id, reasons=[reason])
            continue
        users.append(mapped.user)
        sources.append(record_id)
    if users:
        result = await insider.upsert_users(users, skip_hook=skip_hook)
        for failure in result.failures:
            record_id = sources[failure.index]
            stats.reject(Rejection(record_id=record_id, stage="insider", reasons=failure.reasons))
            log.warning(
                "customer refused by Insider", customer_id=record_id, reasons=failure.reasons
            )
        stats.sent += len(users) - len(result.failures)
    return stats


@dataclass(frozen=True)
class SyncOutcome:
    stats: SyncStats
    cursor: str | None
    done: bool


async def sync_customers(
    ct: CommercetoolsClient,
    insider: InsiderClient,
    config: MappingConfig,
    *,
    window: Window,
    after_id: str | None,
    batch_size: int,
    skip_hook: bool,
    budget_seconds: float | None = None,
    on_batch: Callable[[SyncStats, str | None], None] | None = None,
) -> SyncOutcome:
    """Sync customers after `after_id` until done or the time budget is spent.

    `on_batch(stats_so_far, cursor)` runs after every sent batch (the activity heartbeats
    there), so a crash resumes from the last batch Insider acknowledged.
    """
    stats = SyncStats()
    started = time.monotonic()
    cursor = after_id
    batches = prefetched(
        raw_batches(ct, "customers", window, after_id, batch_size, CUSTOMER_EXPAND)
    )
    try:
        async for batch in batches:
            stats.add(
                await send_customer_batch(insider, batch.records, config, skip_hook=skip_hook)
            )
            cursor = batch.cursor
            stats.busy_seconds = time.monotonic() - started
            if on_batch is not None:
                on_batch(stats, cursor)
            if cursor is None:
                return SyncOutcome(stats, None, done=True)
            if budget_seconds is not None and stats.busy_seconds >= budget_seconds:
                return SyncOutcome(stats, cursor, done=False)
    finally:
        await batches.aclose()  # type: ignore[attr-defined]
    stats.busy_seconds = time.monotonic() - started
    return SyncOutcome(stats, cursor, done=True)
