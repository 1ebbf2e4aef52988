"""Which commercetools records a check looks at: a random sample over ids, or all of them.

commercetools cannot pick random records, and offsets stop at 10,000; ids are random
UUIDs, so a sample takes short runs of ids after random pivots until it has enough.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

import httpx

from ct_insider.commercetools.client import CommercetoolsClient

# Ids taken after each random pivot: short runs keep the sample spread over the id space.
RUN_LENGTH = 10


async def count(ct: CommercetoolsClient, resource: str, where: str | None) -> int:
    query = {"limit": "1", "withTotal": "true"}
    if where:
        query["where"] = where
    body = await ct.get_json(resource, httpx.QueryParams(query))
    return int(body.get("total") or 0)


async def page_ids(
    ct: CommercetoolsClient,
    resource: str,
    where: str | None,
    after_id: str | None,
    page_size: int,
) -> tuple[list[str], str | None]:
    """One page of ids in id order, and the cursor after it (None: that was the last)."""
    page = await ct.page(resource, where=where, after_id=after_id, page_size=page_size)
    return [str(r["id"]) for r in page.results], page.last_id


async def sample_ids(
    ct: CommercetoolsClient,
    resource: str,
    where: str | None,
    size: int,
    rng: random.Random | None = None,
    on_page: Callable[[], None] | None = None,
) -> list[str]:
    """Up to `size` distinct ids spread at random over the matching records (all of them
    when there are no more than `size`), in id order. `on_page` is called after every page
    read (up to size*4 of them: an activity heartbeats there)."""
    rng = rng or random.Random()
    total = await count(ct, resource, where)
    if total <= size:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            found, cursor = await page_ids(ct, resource, where, cursor, 500)
            if on_page is not None:
                on_page()
            ids.extend(found)
            if cursor is None:
                return ids
    chosen: set[str] = set()
    for _ in range(size * 4):  # bounded: a tiny id range may keep hitting the same runs
        if len(chosen) >= size:
            break
        pivot = str(uuid.UUID(int=rng.getrandbits(128)))
        found, _cursor = await page_ids(
            ct, resource, where, pivot, min(RUN_LENGTH, size - len(chosen))
        )
        if not found:  # past the last id: wrap around to the first
            found, _cursor = await page_ids(ct, resource, where, None, RUN_LENGTH)
        if on_page is not None:
            on_page()
        chosen.update(found[: size - len(chosen)])
    return sorted(chosen)
