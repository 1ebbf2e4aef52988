"""Historical orders never start live journeys: older than the live window they go out with
skip_hook on every path, and a backfill can send them as profiles only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client

from ct_insider.mapping.config import MappingConfig
from starters.backfill import start_backfill
from tests.bridge_helpers import message, serving_bridge
from tests.conftest import Emulators, eventually, running_delta, running_worker, status_when
from workflows.backfill import BackfillInput

pytestmark = pytest.mark.integration

# Imported orders carry their real date in completedAt.
MAPPING = MappingConfig.model_validate({"orders": {"purchase_time": "completedAt"}})


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def imported_order(
    number: str, sku: str, completed: datetime, *, customer_id: str | None, email: str
) -> dict[str, Any]:
    return {
        "orderNumber": number,
        **({"customerId": customer_id} if customer_id else {}),
        "customerEmail": email,
        "totalPrice": {"currencyCode": "USD", "centAmount": 1500},
        "lineItems": [
            {
                "name": {"en": f"Item {sku}"},
                "variant": {"sku": sku},
                "quantity": 1,
                "price": {"value": {"currencyCode": "USD", "centAmount": 1500}, "country": "US"},
            }
        ],
        "orderState": "Complete",
        "shippingAddress": {"country": "US"},
        "country": "US",
        "completedAt": iso(completed),
    }


def given_orders(emu: Emulators) -> tuple[str, str, str]:
    """A customer's order from 3 years ago, a guest's from 2 years ago, one from an hour ago:
    their order numbers."""
    customer_id, email, sku = emu.shopper()
    now = datetime.now(UTC)
    emu.seeder().bulk(
        "order-import",
        [
            imported_order(
                "OLD-1", sku, now - timedelta(days=1100), customer_id=customer_id, email=email
            ),
            imported_order(
                "OLD-GUEST",
                sku,
                now - timedelta(days=730),
                customer_id=None,
                email="guest.old@example.com",
            ),
            imported_order(
                "NEW-1", sku, now - timedelta(hours=1), customer_id=customer_id, email=email
            ),
        ],
    )
    return "OLD-1", "OLD-GUEST", "NEW-1"


def hooks_by_order(emu: Emulators) -> dict[str, set[bool]]:
    """Order number -> the skip_hook flags its purchase events were stored with."""
    found: dict[str, set[bool]] = {}
    for event in emu.insider_events("purchase"):
        found.setdefault(event["event_params"]["event_group_id"], set()).add(event["_skip_hook"])
    return found


async def test_a_delta_sends_orders_older_than_the_live_window_without_starting_journeys(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    # Given three orders reaching a delta sync at once (as after a long outage): two of them
    # years old by their purchase time
    old, old_guest, new = given_orders(emu)
    async with (
        running_worker(client, task_queue, emu, mapping=MAPPING),
        running_delta(client, task_queue, "orders") as handle,
    ):
        # When the delta sends them
        status = await status_when(handle, lambda s: s.totals.events == 3)
    # Then the recent order's purchase may start journeys, the old ones' may not
    assert hooks_by_order(emu) == {old: {True}, old_guest: {True}, new: {False}}
    assert status.totals.historical == 2


async def test_a_backfill_with_history_as_attributes_sends_old_orders_as_profiles_only(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    old, old_guest, new = given_orders(emu)
    async with running_worker(client, task_queue, emu, mapping=MAPPING):
        # When the orders are backfilled with history as attributes
        handle = await start_backfill(
            client, task_queue, BackfillInput(target="orders", history="attributes")
        )
        progress = await handle.result()
    # Then only the recent order's purchase is an event (sent without starting journeys)
    assert hooks_by_order(emu) == {new: {True}}
    # And the old guest order made its profile (its email), with no event
    [guest] = [
        u
        for u in emu.insider_users()
        if u.get("identifiers", {}).get("email") == "guest.old@example.com"
    ]
    assert guest["events"] == []
    # And the run says how many were historical, and that the customer's old order, whose
    # profile is the customer record's, sent nothing
    [phase] = progress.phases
    assert (phase.stats.historical, phase.stats.sent, phase.stats.skipped) == (2, 2, 1)
    assert handle.id.startswith("backfill-orders-profiles-")  # not the events run's id

    # When the same window is backfilled again with history as events
    handle = await start_backfill(client, task_queue, BackfillInput(target="orders"))
    async with running_worker(client, task_queue, emu, mapping=MAPPING):
        await handle.result()
    # Then the old orders' events arrive now (the profiles-only run left them out of the
    # ledger), still without starting journeys, and the recent one is not sent twice
    assert hooks_by_order(emu) == {old: {True}, old_guest: {True}, new: {True}}
    assert len(emu.insider_events("purchase")) == 3


async def test_an_imported_years_old_order_reaching_the_bridge_starts_no_journey(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    # Given a migration importing a customer's order from 3 years ago, and an order from
    # an hour ago, both announced to the bridge (OrderImported carries the order)
    old, _, new = given_orders(emu)
    orders = {o["orderNumber"]: o for o in emu.ct("GET", "orders?limit=10")["results"]}
    async with (
        running_worker(client, task_queue, emu, mapping=MAPPING),
        serving_bridge(client, f"{task_queue}-journeys", emu) as bridge,
    ):
        for number in (old, new):
            order = orders[number]
            answer = await bridge.post(
                "/webhooks/commercetools",
                message("order", order["id"], "OrderImported", order=order),
            )
            assert answer.status_code == 202, answer.text
        # When the journey shards deliver them
        await eventually(lambda: len(hooks_by_order(emu)) == 2, 60, what="both orders in Insider")
    # Then the old order went out without starting journeys, the recent one live
    assert hooks_by_order(emu) == {old: {True}, new: {False}}
