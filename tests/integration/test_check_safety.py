"""Consistency checks stay safe: no purchase event sent twice by a repair, refused repairs
dead-lettered, expired data not judged, and a check of everything continuing as new."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError

from activities.check import SampleInput, selection
from ct_insider.checks.checker import TOO_RECENT_NOTE, ConsistencyChecker
from ct_insider.checks.sampling import sample_ids
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import DeadLetterStore
from ct_insider.insider.client import InsiderClient
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.catalog import CatalogSender
from ct_insider.sync.fingerprints import FingerprintStore
from ct_insider.sync.ledger import DeliveryLedger, InFlight, PendingEvent, PendingOrder
from ct_insider.sync.orders import OrderEventSender
from ct_insider.sync.taxonomy import TaxonomyResolver
from ct_insider.sync.window import parse_timestamp
from starters.backfill import start_backfill
from starters.check import start_check
from tests.conftest import Emulators, eventually, running_worker
from workflows.backfill import BackfillInput
from workflows.check import RETENTION_NOTES, CheckInput, retention_floor

pytestmark = pytest.mark.integration


def seed_orders(emulators: Emulators, count: int) -> list[dict[str, Any]]:
    seeder = emulators.seeder()
    seeder.orders(count, seeder.customers(count), seeder.catalog(1))
    orders: list[dict[str, Any]] = emulators.ct("GET", "orders?sort=orderNumber+asc")["results"]
    return orders


def hide_purchase(emulators: Emulators, order: dict[str, Any]) -> str:
    """Take an order's first purchase event out of what Insider shows (as an event
    accepted, but not readable yet, looks); returns its ledger key."""
    line = order["lineItems"][0]
    httpx.post(
        f"{emulators.insider_url}/_emulator/drift",
        json={
            "action": "delete_event",
            "identifiers": {"uuid": order["customerId"]},
            "match": {
                "event_name": "purchase",
                "event_group_id": order["orderNumber"],
                "product_id": line["variant"]["sku"],
            },
        },
    ).raise_for_status()
    return f"purchase:{line['id']}"


def purchases(emulators: Emulators) -> Counter[tuple[str, str]]:
    return Counter(
        (e["event_params"]["event_group_id"], e["event_params"]["product_id"])
        for e in emulators.insider_events("purchase")
    )


async def test_an_order_delivered_just_now_is_not_judged_nor_sent_again(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emulators = clean_emulators
    # Given two orders placed and delivered just now
    orders = seed_orders(emulators, 2)
    async with running_worker(client, task_queue, emulators):
        await (await start_backfill(client, task_queue, BackfillInput(target="orders"))).result()
        delivered = purchases(emulators)
        assert all(count == 1 for count in delivered.values())
        # And one of their events accepted by Insider, not readable yet
        hide_purchase(emulators, orders[0])
        upserts_before = emulators.insider_stats()["requests"]["upsert"]

        # When orders are checked with repair (the default freshness margin)
        report = await (
            await start_check(client, task_queue, CheckInput(entity="orders", repair=True))
        ).result()

    # Then both are too recent to judge: nothing reported, nothing sent again
    assert (report.sampled, report.checked, report.too_recent) == (2, 0, 2)
    assert report.counts.total == report.repaired == 0
    assert TOO_RECENT_NOTE in report.notes
    assert emulators.insider_stats()["requests"]["upsert"] == upserts_before
    # And Insider holds every other event exactly once (the hidden one was not re-sent)
    after = purchases(emulators)
    assert sum(after.values()) == sum(delivered.values()) - 1
    assert all(count == 1 for count in after.values())


@asynccontextmanager
async def order_checker(emulators: Emulators) -> AsyncIterator[ConsistencyChecker]:
    """The checker a worker's check activity runs, wired to the emulators as the worker
    wires it (workers/main.py), to be called with a freshness cutoff of the test's choice."""
    mapping = MappingConfig()
    async with (
        CommercetoolsClient(emulators.ct_settings()) as ct,
        InsiderClient(emulators.insider_settings()) as insider,
    ):
        taxonomy = TaxonomyResolver(ct)
        orders = OrderEventSender(ct, insider, DeliveryLedger(ct), taxonomy, mapping)
        catalog = CatalogSender(ct, insider, taxonomy, mapping.catalog, FingerprintStore(ct))
        yield ConsistencyChecker(ct, insider, mapping, orders, catalog)


async def test_an_old_order_delivered_just_now_is_not_judged(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emulators = clean_emulators
    # Given an order last changed before the freshness cutoff below
    [order] = seed_orders(emulators, 1)
    cutoff = parse_timestamp(order["lastModifiedAt"])
    async with running_worker(client, task_queue, emulators):
        # And delivered after it (its ledger entry written later), its event accepted by
        # Insider but not readable yet
        await (await start_backfill(client, task_queue, BackfillInput(target="orders"))).result()
    hide_purchase(emulators, order)
    upserts_before = emulators.insider_stats()["requests"]["upsert"]

    # When orders are checked with repair, with that cutoff (a check workflow's is its own
    # time less the margin, which a test could put between two moments only by waiting)
    async with order_checker(emulators) as checker:
        report = await checker.check_orders(
            [order["id"]], repair=True, lane=f"check-{task_queue}", too_recent_after=cutoff
        )

    # Then it is too recent to judge, and nothing is sent again
    assert (report.checked, report.too_recent, report.repaired) == (0, 1, 0)
    assert emulators.insider_stats()["requests"]["upsert"] == upserts_before


async def test_an_order_in_flight_in_another_lane_is_not_repaired(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emulators = clean_emulators
    # Given two delivered orders
    orders = seed_orders(emulators, 2)
    busy = orders[0]
    async with running_worker(client, task_queue, emulators):
        await (await start_backfill(client, task_queue, BackfillInput(target="orders"))).result()
        # And a delta lane sending one of its events right now: announced in flight, not
        # in the ledger yet, accepted by Insider but not readable yet
        key = hide_purchase(emulators, busy)
        lane = f"delta-orders-{task_queue}"
        async with CommercetoolsClient(emulators.ct_settings()) as ct:
            ledger = DeliveryLedger(ct)
            assert await ledger.correct(busy["id"], held=(), lost=[key])
            line = busy["lineItems"][0]
            pending = PendingOrder(
                identifiers={"uuid": busy["customerId"]},
                events=[
                    PendingEvent(
                        key=key,
                        event_name="purchase",
                        timestamp=busy["createdAt"],
                        event_group_id=busy["orderNumber"],
                        product_id=line["variant"]["sku"],
                    )
                ],
                sending=[key],
            )
            await ledger.mark_in_flight(lane, InFlight(orders={busy["id"]: pending}))
        events_before = sum(purchases(emulators).values())

        # When orders are checked with repair, judging even the newest orders
        report = await (
            await start_check(
                client,
                task_queue,
                CheckInput(entity="orders", repair=True, recent_margin_seconds=0),
            )
        ).result()

        # Then the order in flight is left to its lane: not repaired, not sent again
        assert report.too_recent == 1
        assert report.checked == 1
        assert report.repaired == 0
        assert report.counts.missing == 0
        assert sum(purchases(emulators).values()) == events_before
        async with CommercetoolsClient(emulators.ct_settings()) as ct:
            ledger = DeliveryLedger(ct)
            assert await ledger.in_flight(lane) is not None  # the lane's marker untouched
            await ledger.clear_in_flight(lane)


async def test_a_repair_insider_refuses_is_dead_lettered(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emulators = clean_emulators
    # Given a delivered order whose purchase event Insider lost
    orders = seed_orders(emulators, 1)
    async with running_worker(client, task_queue, emulators):
        await (await start_backfill(client, task_queue, BackfillInput(target="orders"))).result()
        hide_purchase(emulators, orders[0])
        # And Insider refusing purchase events from now on
        emulators.insider_faults(undefined_events=["purchase"])

        # When orders are checked with repair
        handle = await start_check(
            client, task_queue, CheckInput(entity="orders", repair=True, recent_margin_seconds=0)
        )
        report = await handle.result()
    emulators.insider_faults()

    # Then the repair failed for it, and it waits in the dead-letter store (path "check")
    assert report.repaired == 0
    assert [f.split(" ")[0] for f in report.repair_failures] == [orders[0]["id"]]
    async with CommercetoolsClient(emulators.ct_settings()) as ct:
        [letter] = await DeadLetterStore(ct).list(path="check")
    assert (letter.entity, letter.record_id, letter.run) == ("order", orders[0]["id"], handle.id)
    assert letter.redrive == {"resource": "orders", "id": orders[0]["id"], "skip_hook": True}
    assert any("not defined" in reason for reason in letter.reasons)


async def test_a_failed_check_is_marked_failed(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given a customer, and a worker whose Insider token Insider refuses
    clean_emulators.seeder().customers(1)
    async with running_worker(client, task_queue, clean_emulators, api_key="not-the-token"):
        # When customers are checked
        handle = await start_check(client, task_queue, CheckInput(entity="customers"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()

    # Then the run is found among the failed ones (once visibility has caught up)
    async def failed() -> list[str]:
        query = f'CtOutcome="failed" AND TaskQueue="{task_queue}"'
        return [execution.id async for execution in client.list_workflows(query)]

    await eventually(failed, until=lambda ids: ids == [handle.id], what="the failed run listed")


async def test_a_check_of_every_record_continues_as_new_and_covers_all(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given 5 customers Insider has never heard of
    customer_ids = {cid for cid, _ in clean_emulators.seeder().customers(5)}
    async with running_worker(client, task_queue, clean_emulators):
        # When every customer is checked, 2 a page, one chunk per run
        handle = await start_check(
            client,
            task_queue,
            CheckInput(entity="customers", all=True, page_size=2, max_chunks_per_run=1),
        )
        report = await handle.result()

    # Then it ran as 3 runs (2 continued as new) ...
    async def runs() -> Counter[WorkflowExecutionStatus | None]:
        query = f'WorkflowId="{handle.id}"'
        return Counter([execution.status async for execution in client.list_workflows(query)])

    three_runs = {WorkflowExecutionStatus.CONTINUED_AS_NEW: 2, WorkflowExecutionStatus.COMPLETED: 1}
    await eventually(runs, until=lambda found: found == three_runs, what="the 3 runs listed")
    # ... and the final report covers every record, once
    assert (report.sampled, report.checked) == (5, 5)
    assert sorted(d.record_id for d in report.missing) == sorted(customer_ids)
    # And, no --since given, only customers changed in the last 12 months were selected
    # (the window the first run computed, carried to the last)
    assert report.notes.count(RETENTION_NOTES["customers"]) == 1
    history = await handle.fetch_history()
    [sampled, *_] = [
        event.activity_task_scheduled_event_attributes.input.payloads
        for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name
        == "sample_check_records"
    ]
    [asked] = await client.data_converter.decode(sampled, [SampleInput])
    assert isinstance(asked, SampleInput)
    assert asked.since is not None
    expected = datetime.now(UTC) - timedelta(days=365)
    assert abs(asked.since - expected) < timedelta(minutes=5)


async def test_an_order_older_than_insiders_retention_is_not_sampled(
    clean_emulators: Emulators,
) -> None:
    # Given two orders placed now
    orders = seed_orders(clean_emulators, 2)
    now = datetime.now(UTC)
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        # When a check with no --since selects them today, and 731 days from now
        today = await sample_ids(
            ct, "orders", selection("orders", retention_floor("orders", now)), 10
        )
        later = now + timedelta(days=731)
        expired = await sample_ids(
            ct, "orders", selection("orders", retention_floor("orders", later)), 10
        )
    # Then today both are sampled, and once older than 730 days neither is
    assert sorted(today) == sorted(o["id"] for o in orders)
    assert expired == []
