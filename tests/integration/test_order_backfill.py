"""Order backfill: purchase history on unified profiles, each event exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import Event, Identifiers, User
from ct_insider.sync.orders import MAX_USERS_PER_EVENT_REQUEST
from ct_insider.sync.window import Window
from starters.backfill import start_backfill
from tests.conftest import (
    Emulators,
    running_delta,
    running_worker,
    status_when,
)
from workers.main import Workers
from workflows.backfill import BackfillInput, BackfillProgress

pytestmark = pytest.mark.integration


def expected_purchases(orders: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter(
        (str(order["orderNumber"]), str(line["variant"]["sku"]))
        for order in orders
        for line in order["lineItems"]
    )


def all_orders(emulators: Emulators) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = []
    last = ""
    while True:
        where = f'id > "{last}"' if last else None
        query = "orders?sort=id+asc&limit=500" + (f"&where={where}" if where else "")
        page = emulators.ct("GET", query)["results"]
        orders.extend(page)
        if len(page) < 500:
            return orders
        last = page[-1]["id"]


def stored_purchases(emulators: Emulators) -> Counter[tuple[str, str]]:
    return Counter(
        (e["event_params"]["event_group_id"], e["event_params"]["product_id"])
        for e in emulators.insider_events("purchase")
    )


async def test_backfill_all_sends_5000_customers_and_5000_orders_exactly_once(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given 5,000 customers and 5,000 orders (every fifth a guest order with its own email)
    seeder = clean_emulators.seeder()
    customers = seeder.customers(5_000)
    skus = seeder.catalog(20)
    seeder.orders(5_000, customers, skus)
    orders = all_orders(clean_emulators)
    assert len(orders) == 5_000

    # When `backfill all` runs
    handle = await start_backfill(client, worker.task_queue, BackfillInput(target="all"))
    result = await handle.result()

    # Then every customer is a profile and every order line a purchase event, each once
    customer_phase, order_phase = result.phases
    assert (customer_phase.stats.processed, customer_phase.stats.sent) == (5_000, 5_000)
    assert (order_phase.stats.processed, order_phase.stats.sent) == (5_000, 5_000)
    assert order_phase.stats.rejected == 0
    expected = expected_purchases(orders)
    assert stored_purchases(clean_emulators) == expected
    assert order_phase.stats.events == sum(expected.values())
    users = clean_emulators.insider_users()
    guests = [u for u in users if "uuid" not in u["identifiers"]]
    assert len(users) - len(guests) == 5_000
    assert len(guests) == 1_000  # guest orders attach to a profile by email
    # Registered customers' purchases joined their profiles (no profile per order).
    events = clean_emulators.insider_events("purchase")
    assert all(e["_skip_hook"] is True for e in events)

    # When the same window is backfilled again
    again = await (
        await start_backfill(client, worker.task_queue, BackfillInput(target="orders"))
    ).result()

    # Then the delivery ledger lets no event out twice
    assert again.phases[0].stats.skipped == 5_000
    assert again.phases[0].stats.events == 0
    assert stored_purchases(clean_emulators) == expected


async def test_lost_insider_answers_are_verified_not_resent(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given orders, and an Insider that stores a third of the upserts but loses the answer
    seeder = clean_emulators.seeder()
    customers = seeder.customers(50)
    seeder.orders(200, customers, seeder.catalog(10))
    orders = all_orders(clean_emulators)
    clean_emulators.insider_faults(lost_answer_rate=0.3)

    # When the orders are backfilled in batches of 40
    handle = await start_backfill(
        client,
        worker.task_queue,
        BackfillInput(target="orders", batch_size=40, chunk_seconds=0.001),
    )
    result = await handle.result()

    # Then each purchase is stored once: the lost requests were settled by asking Insider
    # what it already had
    assert result.phases[0].stats.rejected == 0
    assert stored_purchases(clean_emulators) == expected_purchases(orders)
    lost = clean_emulators.insider_stats()["statuses"].get("upsert:500", 0)
    assert lost > 0, "no lost answer: verification not exercised"
    assert successful_profile_reads(clean_emulators) > 0


async def test_refunds_and_cancellations_follow_the_purchase_once(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given a customer's order placed from a cart
    emu = clean_emulators
    customer_id, email, sku = emu.shopper()
    order = emu.place_order(
        sku,
        quantity=2,
        customerId=customer_id,
        customerEmail=email,
        locale="en-US",
        orderNumber="WEB-1",
    )
    await (await start_backfill(client, worker.task_queue, BackfillInput(target="orders"))).result()
    assert [e["event_params"]["quantity"] for e in emu.insider_events("purchase")] == [2]

    # When the order is refunded through its payment and then cancelled
    payment = emu.ct(
        "POST",
        "payments",
        {
            "amountPlanned": order["totalPrice"],
            "transactions": [
                {"type": "Charge", "amount": order["totalPrice"], "state": "Success"},
                {"type": "Refund", "amount": order["totalPrice"], "state": "Success"},
            ],
        },
    )
    emu.ct(
        "POST",
        f"orders/{order['id']}",
        {
            "version": order["version"],
            "actions": [
                {"action": "addPayment", "payment": {"typeId": "payment", "id": payment["id"]}},
                {"action": "changeOrderState", "orderState": "Cancelled"},
            ],
        },
    )
    for _ in range(2):  # and the orders are backfilled twice more
        await (
            await start_backfill(client, worker.task_queue, BackfillInput(target="orders"))
        ).result()

    # Then the profile has the purchase, one refund and one cancellation, each once
    [profile] = [u for u in emu.insider_users() if u["identifiers"].get("uuid") == customer_id]
    names = Counter(e["event_name"] for e in profile["events"])
    assert names == {"purchase": 1, "purchase_refund": 1, "cancelled_purchase": 1}
    [refund] = [e for e in profile["events"] if e["event_name"] == "purchase_refund"]
    assert refund["event_params"]["event_group_id"] == "WEB-1"
    assert refund["event_params"]["unit_sale_price"] == order["totalPrice"]["centAmount"] / 100


async def test_an_anonymous_checkout_merges_the_visitor_into_the_known_profile(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, email, sku = emu.shopper()
    # Given a known customer in Insider, and an anonymous visitor's profile with a cart event
    await (
        await start_backfill(client, worker.task_queue, BackfillInput(target="customers"))
    ).result()
    async with InsiderClient(emu.insider_settings()) as insider:
        await insider.upsert_users(
            [
                User(
                    identifiers=Identifiers(custom={"ct_anonymous_id": "anon-42"}),
                    events=[
                        Event(
                            event_name="item_added_to_cart",
                            timestamp="2026-01-01T00:00:00Z",
                            event_params={"product_id": sku},
                        )
                    ],
                )
            ]
        )
    assert len(emu.insider_users()) == 2

    # When that visitor checks out anonymously with the customer's email
    emu.place_order(sku, anonymousId="anon-42", customerEmail=email)
    await (await start_backfill(client, worker.task_queue, BackfillInput(target="orders"))).result()

    # Then one upsert carried both identifiers and Insider merged the two profiles
    [profile] = emu.insider_users()
    assert profile["identifiers"]["uuid"] == customer_id
    assert profile["identifiers"]["custom.ct_anonymous_id"] == "anon-42"
    assert sorted(e["event_name"] for e in profile["events"]) == ["item_added_to_cart", "purchase"]


def successful_profile_reads(emulators: Emulators) -> int:
    statuses = emulators.insider_stats()["statuses"]
    return int(statuses.get("profile:200", 0)) + int(statuses.get("profile:404", 0))


async def test_backfill_under_5xx_and_lost_answers_makes_progress_and_stores_each_event_once(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    # (Insider's profile quota is raised here: this measures how settling makes progress,
    # not how long 1,000 units a minute take; tests/unit/test_profile_quota.py paces.)
    httpx.post(f"{emu.insider_url}/_emulator/limits", json={"profile": 60_000}).raise_for_status()
    seeder = emu.seeder()
    customers = seeder.customers(300)
    skus = seeder.catalog(10)
    # Given two sets of 394 orders, seeded a moment apart (two lastModifiedAt windows)
    seeder.orders(394, customers, skus)
    await asyncio.sleep(0.05)
    split = datetime.now(UTC)
    await asyncio.sleep(0.05)
    seeder.orders(394, customers, skus, first_number=394)
    orders = all_orders(emu)

    async def backfill(window: Window) -> BackfillProgress:
        handle = await start_backfill(
            client, task_queue, BackfillInput(target="orders", window=window)
        )
        return await handle.result()

    async with running_worker(
        client, task_queue, emu, profile_units_per_minute=50_000, settle_grace_seconds=0.2
    ):
        # When the first set is backfilled by a healthy Insider
        await backfill(Window(until=split))
        healthy_upserts = upsert_requests(emu)
        # And the second by one that answers 20% 503 and loses 10% of its answers (the first
        # answer surely). No 429s: this measures settling, not Retry-After waits (the
        # rate-limit tests of the catalog and the client inject those where they are the
        # subject).
        emu.insider_faults(error_rate=0.2, lost_answer_rate=0.1, lost_answers_next=1)
        result = await backfill(Window(since=split))
        emu.insider_faults()

    # Then every purchase is stored once
    assert result.phases[0].stats.rejected == 0
    assert stored_purchases(emu) == expected_purchases(orders)
    stats = emu.insider_stats()
    doubtful = int(stats["statuses"].get("upsert:500", 0))
    assert doubtful > 0, "no fault was injected"
    # And settling the doubtful requests read at most one profile per order in them (an
    # upsert carrying events holds at most MAX_USERS_PER_EVENT_REQUEST orders)
    assert 0 < successful_profile_reads(emu) <= doubtful * MAX_USERS_PER_EVENT_REQUEST
    # And it made progress: counted in requests, not wall time (a loaded CI machine stretches
    # every settle). Each faulty answer costs at most one resend of what was missing, so the
    # faulty run sends what the healthy one sent plus about one request per faulty answer; a
    # client that resent whole batches or stored ones again sends far more. Faulty answers are
    # counted as they happen, so the bound holds whatever the random draw.
    faulty_upserts = upsert_requests(emu) - healthy_upserts
    print(
        f"backfill of 394 orders: healthy {healthy_upserts} upserts, faulty {faulty_upserts} "
        f"upserts of which {doubtful} answered 500 or lost"
    )
    assert healthy_upserts > 0
    assert faulty_upserts <= 2 * healthy_upserts + 2 * doubtful


def upsert_requests(emulators: Emulators) -> int:
    statuses = emulators.insider_stats()["statuses"]
    return sum(int(count) for key, count in statuses.items() if key.startswith("upsert:"))


async def test_orders_delta_under_5xx_and_lost_answers_stores_each_purchase_once(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customers = emu.seeder().customers(20)
    skus = emu.seeder().catalog(3)
    # Given an Insider that answers 30% 5xx and loses 10% of its answers
    emu.insider_faults(error_rate=0.3, lost_answer_rate=0.1)
    async with running_delta(client, worker.task_queue, "orders") as handle:
        # When orders are placed one by one while the delta sync runs (many windows)
        orders = []
        for n, (customer_id, email) in enumerate(customers):
            orders.append(
                emu.place_order(
                    skus[n % 3], customerId=customer_id, customerEmail=email, orderNumber=f"D-{n}"
                )
            )
            await asyncio.sleep(0.3)
        await status_when(
            handle,
            lambda s: s.totals.events + s.totals.found_in_insider >= len(orders),
            within_seconds=120,
        )
        emu.insider_faults()
        settled = await status_when(handle, lambda s: s.windows >= 1)
        await status_when(handle, lambda s: s.windows >= settled.windows + 4)
    # Then each purchase is in Insider once
    assert stored_purchases(emu) == expected_purchases(orders)
    assert emu.insider_stats()["statuses"].get("upsert:500", 0) > 0, "no fault was injected"
