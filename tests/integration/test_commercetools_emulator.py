"""The commercetools emulator and our client over real HTTP: auth and cursor paging."""

from __future__ import annotations

import httpx
import pytest

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsRequestError
from tests.conftest import PROJECT_KEY, Emulators

pytestmark = pytest.mark.integration


async def test_cursor_paging_returns_every_record_once_in_id_order(
    clean_emulators: Emulators,
) -> None:
    # Given 1,234 customers (ids are random UUIDs, so insertion order is not id order)
    seeded = {customer_id for customer_id, _ in clean_emulators.seeder().customers(1_234)}

    scanned_before = clean_emulators.ct_stats()["scanned"]

    # When paging through them 100 at a time with the id cursor
    ids: list[str] = []
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        async for page in ct.pages("customers", page_size=100):
            ids.extend(record["id"] for record in page.results)

    # Then each appears exactly once, in id order
    assert len(ids) == 1_234
    assert set(ids) == seeded
    assert ids == sorted(ids)
    # And the emulator evaluated the predicate on each customer once, not on the whole
    # collection per page (13 pages: 1,234 + 1,134 + ... = ~8,600 before issue 19, which
    # made paging 1,000,000 customers quadratic)
    assert clean_emulators.ct_stats()["scanned"] - scanned_before == 1_234


async def test_cursor_paging_sees_records_created_and_deleted_between_pages(
    clean_emulators: Emulators,
) -> None:
    # Given 300 customers, the first (lowest id) one read as a page of its own
    seeder = clean_emulators.seeder()
    seeder.customers(300)
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        first = await ct.page("customers", page_size=1)
        cursor = first.last_id
        assert cursor is not None
        unread = [
            record["id"]
            async for page in ct.pages("customers", after_id=cursor, page_size=100)
            for record in page.results
        ]
        # When three customers after the cursor are deleted and three others created (as
        # many as deleted: the collection's size alone does not tell it changed)
        for customer_id in unread[:3]:
            gone = clean_emulators.ct("GET", f"customers/{customer_id}")
            clean_emulators.ct("DELETE", f"customers/{customer_id}?version={gone['version']}")
        created = [customer_id for customer_id, _ in seeder.customers(3, prefix="late")]
        # (random ids: each falls after the lowest of 300 with probability 300/301)
        assert any(customer_id > cursor for customer_id in created)
        # And the rest is paged from the cursor
        rest = [
            record["id"]
            async for page in ct.pages("customers", after_id=cursor, page_size=100)
            for record in page.results
        ]

    # Then the walk reflects both changes, as the API's would, still in id order
    assert rest == sorted({*unread[3:], *(c for c in created if c > cursor)})


async def test_paging_a_custom_object_container_reads_each_object_once(
    clean_emulators: Emulators,
) -> None:
    # Given 300 custom objects in one container and 50 in another
    seeder = clean_emulators.seeder()
    seeder.bulk(
        "key-value-document",
        [{"container": "walked", "key": f"k{n}", "value": n} for n in range(300)]
        + [{"container": "other", "key": f"k{n}", "value": n} for n in range(50)],
    )
    scanned_before = clean_emulators.ct_stats()["scanned"]

    # When the container is paged 100 at a time (the catalog sweep's walk of fingerprints:
    # the emulator appends the container's predicate to the cursor's)
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        values = [
            record["value"]
            async for page in ct.pages("custom-objects/walked", page_size=100)
            for record in page.results
        ]

    # Then every object of it, once
    assert sorted(values) == list(range(300))
    # And each page read on from the cursor: at most the 350 objects once each, not from
    # the start of the collection every page (~1,000 before: a catalog sweep scanned
    # 10 objects per item at 600,000 items, issue 19)
    assert clean_emulators.ct_stats()["scanned"] - scanned_before <= 400


async def test_paging_combines_a_predicate_with_the_cursor(clean_emulators: Emulators) -> None:
    clean_emulators.seeder().customers(300)
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        numbers = [
            record["customerNumber"]
            async for page in ct.pages(
                "customers", where='customerNumber >= "C000250"', page_size=20
            )
            for record in page.results
        ]
    assert sorted(numbers) == [f"C{n:06d}" for n in range(250, 300)]


async def test_api_refuses_requests_without_a_token(clean_emulators: Emulators) -> None:
    response = httpx.get(f"{clean_emulators.ct_url}/{PROJECT_KEY}/customers")
    assert response.status_code == 401


async def test_invalid_predicate_is_a_typed_error_with_the_api_code(
    clean_emulators: Emulators,
) -> None:
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        with pytest.raises(CommercetoolsRequestError) as caught:
            await ct.page("customers", where="this is not a predicate ((")
    assert caught.value.status_code == 400
    assert "InvalidInput" in caught.value.codes
