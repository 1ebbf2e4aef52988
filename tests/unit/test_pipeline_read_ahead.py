"""The paging loop reads ahead of the sender by one batch, and not past a chunk's budget.

What a chunk reads ahead and does not send is read again by the next chunk: with a
commercetools that answered slowly (a large catalog), every chunk sent one batch and had
read two more, so each product was read three times (issue 19). Counted, not timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from ct_insider.commercetools.client import CommercetoolsClient, Page
from ct_insider.sync.pipeline import sync_window
from ct_insider.sync.reports import SyncStats
from ct_insider.sync.window import Window

PAGE = 5
BATCH = 10


class CountingCatalog:
    """commercetools' cursor paging over `size` records, counting the records it returns."""

    def __init__(self, size: int) -> None:
        self.ids = [f"{n:06d}" for n in range(size)]
        self.read = 0

    async def pages(
        self, resource: str, *, where: str | None, after_id: str | None, expand: Any
    ) -> AsyncIterator[Page]:
        start = 0 if after_id is None else self.ids.index(after_id) + 1
        for first in range(start, len(self.ids), PAGE):
            records = [{"id": i} for i in self.ids[first : first + PAGE]]
            self.read += len(records)
            more = first + PAGE < len(self.ids)
            yield Page(records, records[-1]["id"] if more else None)


def client(catalog: CountingCatalog) -> CommercetoolsClient:
    return cast(CommercetoolsClient, catalog)


async def record_count(records: list[dict[str, Any]]) -> SyncStats:
    return SyncStats(processed=len(records), sent=len(records))


@pytest.mark.parametrize("size", [50, 150])
async def test_chunks_whose_budget_ends_after_one_batch_read_each_record_once(
    size: int,
) -> None:
    # Given a catalog, synced in chunks whose time budget is spent by their first batch
    catalog = CountingCatalog(size)
    cursor: str | None = None
    sent = chunks = 0
    # When chunk after chunk resumes from the previous one's cursor until done
    while True:
        outcome = await sync_window(
            client(catalog),
            "products",
            record_count,
            window=Window(),
            after_id=cursor,
            batch_size=BATCH,
            budget_seconds=0.0,
        )
        sent += outcome.stats.sent
        chunks += 1
        cursor = outcome.cursor
        if outcome.done:
            break

    # Then every record was sent once, one batch per chunk
    assert sent == size
    assert chunks == size // BATCH
    # And read once: no chunk read a batch it did not send (whatever the catalog's size)
    assert catalog.read / size == 1.0


async def test_without_a_budget_one_batch_is_read_while_the_previous_is_sent() -> None:
    # Given a catalog of five batches and a sender that gives the reader time to read
    catalog = CountingCatalog(5 * BATCH)
    read_while_sending: list[int] = []

    async def slow_send(records: list[dict[str, Any]]) -> SyncStats:
        for _ in range(50):
            await asyncio.sleep(0)
        read_while_sending.append(catalog.read)
        return await record_count(records)

    # When it is synced without a time budget
    outcome = await sync_window(
        client(catalog), "products", slow_send, window=Window(), after_id=None, batch_size=BATCH
    )

    # Then while a batch was sent, the next one had been read, and no more
    assert outcome.done
    assert outcome.stats.sent == 5 * BATCH
    assert read_while_sending == [2 * BATCH, 3 * BATCH, 4 * BATCH, 5 * BATCH, 5 * BATCH]
