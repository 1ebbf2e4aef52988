"""The paging loop shared by every entity: read a window in id order, send batch by batch.

The same loop serves backfill (a wide window, resumed by cursor) and delta sync (a narrow
window); only the per-batch sender differs between customers and orders.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.sync.reports import SyncStats
from ct_insider.sync.window import Window, parse_timestamp

T = TypeVar("T")


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


async def prefetched(
    source: AsyncIterator[T],
    depth: int = 1,
    read_ahead: Callable[[], bool] = lambda: True,
) -> AsyncIterator[T]:
    """Read ahead of the consumer, so commercetools reads overlap Insider writes.

    At most `depth` items are read beyond those the consumer asked for, and none while
    `read_ahead()` is false (asked each time the consumer takes an item): what is read
    ahead when the consumer stops early (a chunk's time budget spent) is read for nothing,
    and read again by the next chunk.
    """
    # Unbounded, yet never holds more than depth + 1 items: nothing is read unless
    # `may_read()` (read <= asked + depth).
    queue: asyncio.Queue[tuple[bool, T | Exception | None]] = asyncio.Queue()
    asked = 0  # items the consumer asked for
    read = 0  # items read from the source
    changed = asyncio.Condition()  # the consumer asked for one more

    def may_read() -> bool:
        return read < asked or (read < asked + depth and read_ahead())

    async def produce() -> None:
        nonlocal read
        try:
            while True:
                async with changed:
                    await changed.wait_for(may_read)
                try:
                    item = await anext(source)
                except StopAsyncIteration:
                    break
                read += 1
                await queue.put((True, item))
            await queue.put((False, None))
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put((False, exc))
        # CancelledError is not caught: the consumer cancels us when it stops early.

    task = asyncio.create_task(produce())
    try:
        while True:
            async with changed:
                asked += 1
                changed.notify()
            has_item, item = await queue.get()
            if not has_item:
                if isinstance(item, Exception):
                    raise item
                return
            yield item  # type: ignore[misc]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class VersionMemory:
    """Versions of records near the window's end, which the next (overlapping) window reads
    again: a record whose version was already sent is skipped, so overlap costs no re-send."""

    known: Mapping[str, int] = field(default_factory=dict)
    remember_since: datetime | None = None
    remembered: dict[str, int] = field(default_factory=dict)

    def unchanged(self, record: dict[str, Any]) -> bool:
        return self.known.get(str(record.get("id"))) == record.get("version")

    def note(self, record: dict[str, Any]) -> None:
        if self.remember_since is None or not isinstance(record.get("version"), int):
            return
        modified = record.get("lastModifiedAt")
        if isinstance(modified, str) and parse_timestamp(modified) >= self.remember_since:
            self.remembered[str(record["id"])] = int(record["version"])


BatchSender = Callable[[list[dict[str, Any]]], Awaitable[SyncStats]]


@dataclass(frozen=True)
class SyncOutcome:
    stats: SyncStats
    cursor: str | None
    done: bool


async def sync_window(
    ct: CommercetoolsClient,
    resource: str,
    send_batch: BatchSender,
    *,
    window: Window,
    after_id: str | None,
    batch_size: int,
    expand: tuple[str, ...] = (),
    memory: VersionMemory | None = None,
    budget_seconds: float | None = None,
    on_batch: Callable[[SyncStats, str | None], None] | None = None,
) -> SyncOutcome:
    """Sync `resource` records after `after_id` until done or the time budget is spent.

    `on_batch(stats_so_far, cursor)` runs after every sent batch (the activity heartbeats
    there), so a crash resumes from the last batch Insider acknowledged.
    """
    stats = SyncStats()
    started = time.monotonic()
    cursor = after_id
    # The longest a batch took so far: the next batch is read ahead only if the one in
    # hand will likely end within the budget (a chunk's budget ran out with two batches
    # read ahead, which the next chunk read again: as the catalog grew and batches got
    # slower, up to three reads of every product, issue 19).
    slowest = 0.0

    def budget_left_after_this_batch() -> bool:
        if budget_seconds is None:
            return True
        return time.monotonic() - started + slowest < budget_seconds

    batches = prefetched(
        raw_batches(ct, resource, window, after_id, batch_size, expand),
        read_ahead=budget_left_after_this_batch,
    )
    try:
        async for batch in batches:
            batch_started = time.monotonic()
            records = batch.records
            if memory is not None:
                fresh = [r for r in records if not memory.unchanged(r)]
                stats.processed += len(records) - len(fresh)
                stats.skipped += len(records) - len(fresh)
                records = fresh
            if records:
                stats.add(await send_batch(records))
            if memory is not None:
                for record in batch.records:
                    memory.note(record)
            cursor = batch.cursor
            slowest = max(slowest, time.monotonic() - batch_started)
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
