"""Replenishment reminders end to end: the real worker against the Temporal dev server and
both emulators, with a period "day" of one second (CT_INSIDER_REPLENISHMENT_DAY_SECONDS=1,
allowed for tests only).

Where a timer must not fire during a test its period is 1,000 days (seconds here): no
machine is that slow, so no outcome depends on timing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.config import ReplenishmentSettings
from ct_insider.erasure.plan import ErasureRequest
from ct_insider.logging import pii_digest
from ct_insider.mapping.config import MappingConfig
from ct_insider.replenishment.contract import ReplenishmentResult
from ct_insider.timers.kinds import TIMERS_QUERY, ArmedTimer, TimerKind, workflow_id
from starters.backfill import start_backfill
from starters.erase import start_erasure
from tests.bridge_helpers import message, serving_bridge
from tests.conftest import Emulators, eventually, running_delta, status_when
from workers.main import Workers, build_workers
from workflows.backfill import BackfillInput

pytestmark = pytest.mark.integration

NEVER = 1_000  # days (seconds here): cannot run out during a test
SHORT = 3  # days (seconds here): the reminders a test waits for
SETTINGS = {"enabled": True, "learn": True, "day_seconds": 1.0, "scaled_for_tests": True}


@dataclass
class Admission:
    asked: list[TimerKind] = field(default_factory=list)

    async def admits_new(self, kind: TimerKind) -> bool:
        self.asked.append(kind)
        return True


@asynccontextmanager
async def replenishing_worker(
    client: Client,
    task_queue: str,
    emu: Emulators,
    mapping: MappingConfig | None = None,
    **settings: Any,
) -> AsyncIterator[Workers]:
    async with (
        build_workers(
            client,
            task_queue,
            f"{task_queue}-journeys",
            emu.ct_settings(),
            emu.insider_settings(),
            mapping or MappingConfig(),
            replenishment_settings=ReplenishmentSettings.model_validate({**SETTINGS, **settings}),
            admission=Admission(),
        ) as built,
        built.running(),
    ):
        yield built


def consumable(emu: Emulators, sku: str, days: float | None) -> dict[str, Any]:
    """A published product whose variant holds `replenishment-days` (None: no attribute)."""
    emu.seeder().ensure(
        "product-type",
        "product-types",
        {
            "key": "consumable",
            "name": "Consumable",
            "description": "Consumable",
            "attributes": [
                {
                    "name": "replenishment-days",
                    "label": {"en": "Replenishment days"},
                    "isRequired": False,
                    "isSearchable": False,
                    "type": {"name": "number"},
                    "attributeConstraint": "None",
                }
            ],
        },
    )
    attributes = [] if days is None else [{"name": "replenishment-days", "value": days}]
    product: dict[str, Any] = emu.ct(
        "POST",
        "products",
        {
            "productType": {"typeId": "product-type", "key": "consumable"},
            "name": {"en": f"Coffee {sku}"},
            "slug": {"en": sku.lower()},
            "masterVariant": {
                "sku": sku,
                "prices": [{"value": {"currencyCode": "USD", "centAmount": 1500}, "country": "US"}],
                "attributes": attributes,
            },
            "publish": True,
        },
    )
    return product


def set_days(emu: Emulators, product: dict[str, Any], days: float) -> dict[str, Any]:
    current = emu.ct("GET", f"products/{product['id']}")
    changed: dict[str, Any] = emu.ct(
        "POST",
        f"products/{product['id']}",
        {
            "version": current["version"],
            "actions": [
                {
                    "action": "setAttribute",
                    "variantId": 1,
                    "name": "replenishment-days",
                    "value": days,
                    "staged": False,
                },
            ],
        },
    )
    return changed


def reminders(emu: Emulators) -> list[dict[str, Any]]:
    return emu.insider_events("replenishment_due")


def reminder_count(emu: Emulators) -> Counter[str]:
    """How often Insider holds each reminder, by its event id."""
    return Counter(str(e["event_params"]["custom"]["event_id"]) for e in reminders(emu))


async def armed(client: Client, customer_key: str) -> list[ArmedTimer]:
    """The customer's armed timers (none while their workflow has not started: a delivery
    arms them after it sent the purchase)."""
    handle = client.get_workflow_handle(workflow_id("replenishment", customer_key))
    try:
        found: list[ArmedTimer] = await handle.query(TIMERS_QUERY, result_type=list[ArmedTimer])
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return []
    return found


async def result_of(client: Client, customer_key: str, within: float = 60) -> ReplenishmentResult:
    """The customer's run's result, once it has ended (polled, `within` seconds)."""
    handle = client.get_workflow_handle(
        workflow_id("replenishment", customer_key), result_type=ReplenishmentResult
    )

    async def status() -> WorkflowExecutionStatus | None:
        return (await handle.describe()).status

    await eventually(
        status,
        within,
        until=lambda s: s not in (None, WorkflowExecutionStatus.RUNNING),
        what=f"the replenishment run of {customer_key} ended",
    )
    result: ReplenishmentResult = await handle.result()
    return result


async def test_replenish_reminder_fires_after_the_period_moves_on_a_repeat_and_disarms_on_refund(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customers = emu.seeder().customers(4)
    [(alice, alice_email), (bob, bob_email), (carol, carol_email), (frank, frank_email)] = customers
    beans = consumable(emu, f"BEANS-{uuid.uuid4().hex[:8]}", SHORT)
    filters = consumable(emu, f"FILTER-{uuid.uuid4().hex[:8]}", NEVER)
    sku = beans["masterData"]["current"]["masterVariant"]["sku"]
    filter_sku = filters["masterData"]["current"]["masterVariant"]["sku"]
    tea = consumable(emu, f"TEA-{uuid.uuid4().hex[:8]}", None)
    tea_sku = tea["masterData"]["current"]["masterVariant"]["sku"]
    async with (
        replenishing_worker(client, task_queue, emu) as worker,
        running_delta(client, worker.task_queue, "orders") as delta,
    ):
        # Given Alice buys beans (every 3 days), Bob and Carol buy filters (every 1,000),
        # and Frank buys tea (no period attribute)
        alice_order = emu.place_order(sku, quantity=2, customerId=alice, customerEmail=alice_email)
        bob_first = emu.place_order(filter_sku, customerId=bob, customerEmail=bob_email)
        carol_order = emu.place_order(filter_sku, customerId=carol, customerEmail=carol_email)
        frank_first = emu.place_order(tea_sku, customerId=frank, customerEmail=frank_email)
        await status_when(delta, lambda s: s.totals.events == 4)
        # ... which armed nothing for Frank: one purchase teaches no interval
        assert not await started(client, frank)
        bob_due = await eventually(lambda: armed(client, bob), until=lambda a: len(a) == 1)

        # When the filters' period becomes 3 days and Bob buys filters again
        set_days(emu, filters, SHORT)
        bob_repeat = emu.place_order(filter_sku, customerId=bob, customerEmail=bob_email)
        # And Carol's filters are refunded in full
        refund_in_full(emu, carol_order)
        # And Frank buys tea again
        frank_again = emu.place_order(tea_sku, customerId=frank, customerEmail=frank_email)
        await status_when(delta, lambda s: s.totals.events == 7)

        # Then Alice gets one reminder after 3 s, about her purchase
        alice_result = await result_of(client, alice)
        # And Bob's timer moved to his repeat purchase: one reminder, about it
        bob_result = await result_of(client, bob)
        # And Carol's timer was disarmed: her run ended with nothing sent
        carol_result = await result_of(client, carol)
        # And Frank gets one reminder, after the interval he kept (learned)
        frank_result = await result_of(client, frank)

    assert alice_result == ReplenishmentResult(ended="nothing armed", sent=1)
    assert bob_result == ReplenishmentResult(ended="nothing armed", sent=1)
    assert carol_result == ReplenishmentResult(ended="nothing armed", sent=0)
    assert frank_result == ReplenishmentResult(ended="nothing armed", sent=1)
    by_customer = {e["identifiers"]["uuid"]: e for e in reminders_with_profiles(emu)}
    assert set(by_customer) == {alice, bob, frank}
    assert set(reminder_count(emu).values()) == {1}
    alice_reminder = by_customer[alice]["event"]
    assert alice_reminder["event_params"]["product_id"] == sku
    assert alice_reminder["event_params"]["quantity"] == 2
    custom = alice_reminder["event_params"]["custom"]
    assert (custom["order_id"], custom["period_days"], custom["period_source"]) == (
        alice_order["id"],
        SHORT,
        "attribute",
    )
    assert custom["last_purchase_date"] == alice_order["createdAt"][:19] + "Z"
    bob_custom = by_customer[bob]["event"]["event_params"]["custom"]
    assert (bob_custom["order_id"], bob_custom["period_days"]) == (bob_repeat["id"], SHORT)
    assert bob_first["id"] != bob_repeat["id"]
    assert bob_due[0].due_at > datetime.now(UTC) + timedelta(seconds=NEVER / 2)
    frank_custom = by_customer[frank]["event"]["event_params"]["custom"]
    gap = (created(frank_again) - created(frank_first)).total_seconds()  # "days" here
    assert frank_custom["period_source"] == "learned"
    assert frank_custom["period_days"] == pytest.approx(gap)
    assert frank_custom["order_id"] == frank_again["id"]


def refund_in_full(emu: Emulators, order: dict[str, Any]) -> None:
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
    current = emu.ct("GET", f"orders/{order['id']}")
    emu.ct(
        "POST",
        f"orders/{order['id']}",
        {
            "version": current["version"],
            "actions": [
                {"action": "addPayment", "payment": {"typeId": "payment", "id": payment["id"]}}
            ],
        },
    )


def reminders_with_profiles(emu: Emulators) -> list[dict[str, Any]]:
    """Each reminder with the identifiers of the profile holding it."""
    found = []
    for user in emu.insider_users():
        for event in user.get("events", []):
            if event["event_name"] == "replenishment_due":
                found.append({"identifiers": user["identifiers"], "event": event})
    return found


async def started(client: Client, customer_key: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id("replenishment", customer_key)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def created(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(order["createdAt"]).replace("Z", "+00:00"))


async def test_replenish_backfill_of_old_orders_arms_only_future_timers(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    [dora, eve, gus] = emu.seeder().customers(3)
    soon = consumable(emu, f"SOON-{uuid.uuid4().hex[:8]}", 2)
    later = consumable(emu, f"LATER-{uuid.uuid4().hex[:8]}", NEVER)
    tea = consumable(emu, f"TEA-{uuid.uuid4().hex[:8]}", None)
    soon_sku, later_sku, tea_sku = (
        p["masterData"]["current"]["masterVariant"]["sku"] for p in (soon, later, tea)
    )
    guest_email = f"guest-{uuid.uuid4().hex[:8]}@example.com"
    # Given orders placed before the connector ran (commercetools-mock cannot backdate
    # orders, so "old" is made by waiting): Dora bought what lasts 2 days, Gus bought tea
    # (no attribute) twice in a row (his learned interval: the gap), Eve and a guest bought
    # what lasts 1,000 days
    dora_order = emu.place_order(soon_sku, customerId=dora[0], customerEmail=dora[1])
    gus_first = emu.place_order(tea_sku, customerId=gus[0], customerEmail=gus[1])
    gus_again = emu.place_order(tea_sku, customerId=gus[0], customerEmail=gus[1])
    emu.place_order(later_sku, customerId=eve[0], customerEmail=eve[1])
    emu.place_order(later_sku, customerEmail=guest_email)
    # ... and Dora's and Gus's reminders were due before the backfill starts
    gus_due = created(gus_again) + (created(gus_again) - created(gus_first))
    past = max(created(dora_order) + timedelta(seconds=2), gus_due)
    await eventually(lambda: datetime.now(UTC) > past, what="Dora's and Gus's due dates passed")

    # When the orders are backfilled
    async with replenishing_worker(client, task_queue, emu) as worker:
        handle = await start_backfill(client, worker.task_queue, BackfillInput(target="orders"))
        await handle.result()
        # Then every purchase is in Insider
        assert len(emu.insider_events("purchase")) == 5
        # And only the timers still ahead were armed: Eve's and the guest's
        assert not await started(client, dora[0])
        assert not await started(client, gus[0])
        [eve_timer] = await armed(client, eve[0])
        guest_key = f"guest-{pii_digest(guest_email)[:40]}"
        [guest_timer] = await armed(client, guest_key)
    assert eve_timer.what == f"replenishment of {later_sku} (every 1000 days, attribute)"
    assert guest_timer.key == f"{guest_key}/{later_sku}"
    assert "example" not in guest_key
    assert reminders(emu) == []
    for key in (eve[0], guest_key):
        await client.get_workflow_handle(workflow_id("replenishment", key)).terminate("test over")


async def test_replenish_realtime_orders_arm_once_and_a_cancellation_disarms(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    [(hana, hana_email), (ivan, ivan_email)] = emu.seeder().customers(2)
    beans = consumable(emu, f"BEANS-{uuid.uuid4().hex[:8]}", SHORT)
    filters = consumable(emu, f"FILTER-{uuid.uuid4().hex[:8]}", NEVER)
    beans_sku = beans["masterData"]["current"]["masterVariant"]["sku"]
    filter_sku = filters["masterData"]["current"]["masterVariant"]["sku"]
    hana_order = emu.place_order(beans_sku, customerId=hana, customerEmail=hana_email)
    ivan_order = emu.place_order(filter_sku, customerId=ivan, customerEmail=ivan_email)
    async with (
        replenishing_worker(client, task_queue, emu) as worker,
        serving_bridge(client, worker.journey_task_queue, emu) as bridge,
    ):
        # Given both orders reach the bridge, Hana's OrderCreated three times (redelivered)
        # and once more as another message about the same order
        hana_created = message("order", hana_order["id"], "OrderCreated", order=hana_order)
        ivan_created = message("order", ivan_order["id"], "OrderCreated", order=ivan_order)
        for body in (hana_created, hana_created, ivan_created, hana_created):
            assert (await bridge.post("/webhooks/commercetools", body)).status_code == 202
        paid = message("order", hana_order["id"], "OrderPaymentStateChanged", sequence=2)
        assert (await bridge.post("/webhooks/commercetools", paid)).status_code == 202
        await eventually(lambda: len(emu.insider_events("purchase")) == 2)
        await eventually(lambda: armed(client, ivan), until=lambda a: len(a) == 1)
        # When Ivan's order is cancelled
        current = emu.ct("GET", f"orders/{ivan_order['id']}")
        emu.ct(
            "POST",
            f"orders/{ivan_order['id']}",
            {
                "version": current["version"],
                "actions": [{"action": "changeOrderState", "orderState": "Cancelled"}],
            },
        )
        cancelled = message(
            "order", ivan_order["id"], "OrderStateChanged", sequence=2, orderState="Cancelled"
        )
        assert (await bridge.post("/webhooks/commercetools", cancelled)).status_code == 202
        # Then Hana gets one reminder after 3 s, and Ivan's timer is disarmed
        hana_result = await result_of(client, hana)
        ivan_result = await result_of(client, ivan)
    assert hana_result == ReplenishmentResult(ended="nothing armed", sent=1)
    assert ivan_result == ReplenishmentResult(ended="nothing armed", sent=0)
    [reminder] = reminders(emu)
    assert reminder["event_params"]["custom"]["order_id"] == hana_order["id"]
    assert len(emu.insider_events("cancelled_purchase")) == 1


async def test_replenish_timers_of_an_erased_person_are_cancelled(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    [(jo, jo_email)] = emu.seeder().customers(1)
    filters = consumable(emu, f"FILTER-{uuid.uuid4().hex[:8]}", NEVER)
    sku = filters["masterData"]["current"]["masterVariant"]["sku"]
    guest_email = f"guest-{uuid.uuid4().hex[:8]}@example.com"
    emu.place_order(sku, customerId=jo, customerEmail=jo_email)
    emu.place_order(sku, customerEmail=guest_email)
    guest = f"guest-{pii_digest(guest_email)[:40]}"
    async with replenishing_worker(client, task_queue, emu) as worker:
        # Given a customer and a guest with armed timers
        await (
            await start_backfill(client, worker.task_queue, BackfillInput(target="orders"))
        ).result()
        assert len(await armed(client, jo)) == 1
        assert len(await armed(client, guest)) == 1
        # When both are erased (by customer id, and by the guest's email)
        for request in (ErasureRequest(customer_id=jo), ErasureRequest(email=guest_email)):
            await (await start_erasure(client, worker.task_queue, request)).result()
        # Then their timers were cancelled first: no reminder will recreate a profile
        jo_result = await result_of(client, jo)
        guest_result = await result_of(client, guest)
    assert jo_result == ReplenishmentResult(ended="cancelled: customer erased")
    assert guest_result == ReplenishmentResult(ended="cancelled: customer erased")
