"""The delivery ledger on commercetools custom objects: concurrent writers never lose keys."""

from __future__ import annotations

import asyncio

import pytest

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.sync.ledger import DeliveryLedger, InFlight, PendingEvent, PendingOrder
from tests.conftest import Emulators

pytestmark = pytest.mark.integration


async def test_two_writers_from_the_same_stale_read_both_keep_their_keys(
    clean_emulators: Emulators,
) -> None:
    async with (
        CommercetoolsClient(clean_emulators.ct_settings()) as first_ct,
        CommercetoolsClient(clean_emulators.ct_settings()) as second_ct,
    ):
        first, second = DeliveryLedger(first_ct), DeliveryLedger(second_ct)
        # Given two workers that both read "nothing delivered yet" for the same orders
        ids = [f"order-{n}" for n in range(20)]
        stale_first, stale_second = await first.entries(ids), await second.entries(ids)

        # When both record different events at the same time (creates race with version 0)
        await asyncio.gather(
            first.record(stale_first, {i: {"purchase:a"} for i in ids}),
            second.record(stale_second, {i: {"refund:transaction:b"} for i in ids}),
        )

        # Then every order holds both keys
        final = await first.entries(ids)
    assert {i: set(entry.delivered) for i, entry in final.items()} == {
        i: {"purchase:a", "refund:transaction:b"} for i in ids
    }
    assert all(entry.version >= 2 for entry in final.values())


async def test_in_flight_marker_round_trip(clean_emulators: Emulators) -> None:
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        ledger = DeliveryLedger(ct)
        lane = "backfill-orders-beginning--now"
        assert await ledger.in_flight(lane) is None
        marker = InFlight(
            orders={
                "o-1": PendingOrder(
                    identifiers={"uuid": "c-1"},
                    events=[
                        PendingEvent(
                            key="purchase:l-1",
                            event_name="purchase",
                            timestamp="2026-01-01T00:00:00Z",
                            event_group_id="ORD-1",
                            product_id="SKU-1",
                        )
                    ],
                    sending=["purchase:l-1"],
                )
            }
        )
        await ledger.mark_in_flight(lane, marker)
        assert await ledger.in_flight(lane) == marker
        assert await ledger.in_flight("another-lane") is None
        await ledger.clear_in_flight(lane)
        assert await ledger.in_flight(lane) is None
        await ledger.clear_in_flight(lane)  # clearing twice is fine
