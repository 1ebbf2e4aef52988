"""Cart events and cart recovery end to end: carts made and changed in the commercetools
emulator, their change notifications posted to the bridge (the mock sends no
subscriptions), the real worker, the Insider emulator as the judge.

Reminder delays are a few seconds; every wait polls Insider or Temporal (counted work).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from ct_insider.config import CartSettings
from ct_insider.erasure.plan import ErasureRequest
from ct_insider.timers.kinds import TIMERS_QUERY, ArmedTimer, TimerKind
from starters.erase import start_erasure
from tests.bridge_helpers import (
    Bridge,
    change,
    message,
    seconds_ago,
    serving_bridge,
    storefront_event,
)
from tests.conftest import Emulators, eventually, worker_process
from workers.main import Workers
from workflows.cart import CartResult, CartStats, CartWorkflow, cart_workflow_id

pytestmark = pytest.mark.integration

NOTIFY = "/webhooks/commercetools"


def shopper(emu: Emulators) -> tuple[str, str, list[str]]:
    """One customer (id, email) and three SKUs (one catalog: seeding it twice breaks it)."""
    [(customer_id, email)] = emu.seeder().customers(1)
    return customer_id, email, emu.seeder().catalog(1)


def cart_settings(delays: str = "3s") -> CartSettings:
    return CartSettings(events_enabled=True, reminder_delays=delays, coalesce_seconds=0.2)


@dataclass
class ShopCart:
    """A cart in the commercetools emulator, and the notifications its changes made."""

    emu: Emulators
    cart: dict[str, Any]
    notifications: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.cart["id"])

    @classmethod
    def open(cls, emu: Emulators, sku: str, quantity: int = 1, **owner: str) -> ShopCart:
        draft = {"currency": "USD", "country": "US", "locale": "en-US", **owner}
        made = emu.ct("POST", "carts", {**draft, "lineItems": [{"sku": sku, "quantity": quantity}]})
        return cls(emu, made, [change("cart", made["id"], "ResourceCreated", made["version"])])

    def update(self, *actions: dict[str, Any]) -> dict[str, Any]:
        body = {"version": self.cart["version"], "actions": list(actions)}
        self.cart = self.emu.ct("POST", f"carts/{self.id}", body)
        self.notifications.append(change("cart", self.id, "ResourceUpdated", self.cart["version"]))
        return self.notifications[-1]

    def add(self, sku: str, quantity: int = 1) -> dict[str, Any]:
        return self.update({"action": "addLineItem", "sku": sku, "quantity": quantity})

    def remove(self, sku: str) -> dict[str, Any]:
        [line] = [li for li in self.cart["lineItems"] if li["variant"]["sku"] == sku]
        return self.update({"action": "removeLineItem", "lineItemId": line["id"]})

    def order(self) -> dict[str, Any]:
        """The order made from the cart, as its OrderCreated message."""
        placed = self.emu.ct(
            "POST",
            "orders",
            {"cart": {"typeId": "cart", "id": self.id}, "version": self.cart["version"]},
        )
        return message("order", placed["id"], "OrderCreated", order=placed)


def cart_events(emu: Emulators, cart_id: str) -> list[dict[str, Any]]:
    """Every event Insider holds about a cart (its id is their event_group_id)."""
    return [
        event
        for event in emu.insider_events()
        if event.get("event_params", {}).get("event_group_id") == cart_id
    ]


def names(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["event_name"] for e in events)


async def post_all(bridge: Bridge, *bodies: dict[str, Any]) -> None:
    answers = await asyncio.gather(*(bridge.post(NOTIFY, body) for body in bodies))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]


async def cart_ended(client: Client, cart_id: str) -> CartResult:
    handle = client.get_workflow_handle_for(CartWorkflow.run, cart_workflow_id(cart_id))
    result: CartResult = await asyncio.wait_for(handle.result(), 60)
    return result


async def quiet_cart(client: Client, cart_id: str, *, signals: int) -> CartStats:
    """The cart's statistics once it took in `signals` signals and has nothing under way
    (no workflow task, no activity): whatever it was going to send has been handed off."""
    handle = client.get_workflow_handle_for(CartWorkflow.run, cart_workflow_id(cart_id))

    async def observe() -> tuple[bool, CartStats]:
        described = (await handle.describe()).raw_description
        busy = described.HasField("pending_workflow_task") or bool(described.pending_activities)
        return busy or await handle.query(CartWorkflow.busy), await handle.query(CartWorkflow.stats)

    _, stats = await eventually(
        observe,
        60,
        until=lambda seen: not seen[0] and seen[1].signals == signals,
        what=f"the cart to take in {signals} signals and go quiet",
    )
    result: CartStats = stats
    return result


async def test_abandon_a_cart_is_reminded_once_and_redeliveries_change_nothing(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, _, (sku, other, _) = shopper(emu)
    async with serving_bridge(
        client, worker.journey_task_queue, emu, carts=cart_settings("3s")
    ) as bridge:
        # Given a customer's cart filled in two changes, each notification delivered once
        shop = ShopCart.open(emu, sku, customerId=customer_id)
        await post_all(bridge, shop.notifications[-1])
        await eventually(lambda: cart_events(emu, shop.id), what="the first add")
        await post_all(bridge, shop.add(other, 2))
        # Then each SKU is added once, on the customer's profile, as the cart has it
        added = await eventually(
            lambda: cart_events(emu, shop.id), until=lambda e: len(e) == 2, what="two adds"
        )
        assert names(added) == ["item_added_to_cart"] * 2
        by_sku = {e["event_params"]["product_id"]: e["event_params"] for e in added}
        assert by_sku[other]["quantity"] == 2
        assert by_sku[sku]["currency"] == "USD"
        # When the cart is left alone past the delay
        # Then one cart_abandoned reaches the customer's profile
        reminded = await eventually(
            lambda: cart_events(emu, shop.id),
            60,
            until=lambda e: "cart_abandoned" in names(e),
            what="the reminder",
        )
        [reminder] = [e for e in reminded if e["event_name"] == "cart_abandoned"]
        assert sorted(reminder["event_params"]["custom"]["skus"]) == sorted([sku, other])
        # When every notification is delivered three more times, shuffled
        again = shop.notifications * 3
        random.Random(7).shuffle(again)
        await post_all(bridge, *again)
        # Then the cart's workflow took them all in, read the cart again, and sent nothing
        stats = await quiet_cart(client, shop.id, signals=len(shop.notifications) * 4)
        assert stats.bursts >= 3
        assert stats.events == 3  # two adds and the reminder: nothing more handed off
        assert stats.reminders == 1
        assert names(cart_events(emu, shop.id)) == sorted(
            ["item_added_to_cart", "item_added_to_cart", "cart_abandoned"]
        )


async def test_abandon_a_cart_ordered_before_its_delay_is_never_reminded(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, email, (sku, *_) = shopper(emu)
    async with serving_bridge(
        client, worker.journey_task_queue, emu, carts=cart_settings("20s")
    ) as bridge:
        # Given a cart with an item, its reminder armed
        shop = ShopCart.open(emu, sku, customerId=customer_id, customerEmail=email)
        await post_all(bridge, *shop.notifications)
        await eventually(lambda: cart_events(emu, shop.id), what="the add")
        handle = client.get_workflow_handle_for(CartWorkflow.run, cart_workflow_id(shop.id))
        assert await handle.query(TIMERS_QUERY, result_type=list[ArmedTimer])
        # When the customer orders it (the order message names the cart)
        await post_all(bridge, shop.order())
        # Then the cart's workflow ends with the order, and no reminder is ever sent
        assert (await cart_ended(client, shop.id)).ending == "ordered"
        await eventually(lambda: emu.insider_events("purchase"), what="the purchase")
        assert "cart_abandoned" not in names(cart_events(emu, shop.id))


async def test_abandon_an_emptied_cart_is_cleared_and_not_reminded(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    _, _, (sku, *_) = shopper(emu)
    async with serving_bridge(
        client, worker.journey_task_queue, emu, carts=cart_settings("20s")
    ) as bridge:
        # Given a visitor's cart with an item
        shop = ShopCart.open(emu, sku, anonymousId="visitor-5")
        await post_all(bridge, *shop.notifications)
        await eventually(lambda: cart_events(emu, shop.id), what="the add")
        # When the visitor removes it
        await post_all(bridge, shop.remove(sku))
        # Then one cart_cleared goes, and the workflow ends: nothing to remind
        assert (await cart_ended(client, shop.id)).ending == "emptied"
        cleared = await eventually(
            lambda: names(cart_events(emu, shop.id)),
            until=lambda found: "cart_cleared" in found,
            what="the cart cleared",
        )
        assert cleared == ["cart_cleared", "item_added_to_cart"]


async def test_abandon_an_anonymous_cart_signed_in_to_and_ordered_is_not_reminded(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, email, (sku, *_) = shopper(emu)
    async with serving_bridge(
        client, worker.journey_task_queue, emu, carts=cart_settings("20s")
    ) as bridge:
        # Given a visitor's cart with an item (on the visitor's profile)
        shop = ShopCart.open(emu, sku, anonymousId="visitor-9")
        await post_all(bridge, *shop.notifications)
        await eventually(lambda: cart_events(emu, shop.id), what="the visitor's add")
        # When the visitor signs in (the cart becomes the customer's) and orders it
        await post_all(
            bridge,
            shop.update(
                {"action": "setCustomerId", "customerId": customer_id},
                {"action": "setCustomerEmail", "email": email},
            ),
        )
        # Then the cart follows the customer: its item is added to the customer's profile
        users = await eventually(
            lambda: [
                u
                for u in emu.insider_users()
                if u["identifiers"].get("uuid") == customer_id
                and any(e["event_name"] == "item_added_to_cart" for e in u["events"])
            ],
            what="the cart on the customer's profile",
        )
        assert users
        await post_all(bridge, shop.order())
        # And the order ends it: no reminder, to anyone
        assert (await cart_ended(client, shop.id)).ending == "ordered"
        assert "cart_abandoned" not in names(cart_events(emu, shop.id))


async def test_abandon_storefront_cart_events_are_left_to_the_cart_and_checkout_holds_it(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, _, (sku, *_) = shopper(emu)
    async with serving_bridge(
        client, worker.journey_task_queue, emu, carts=cart_settings("20s")
    ) as bridge:
        # Given a cart change, and the storefront's add_to_cart for the same cart
        shop = ShopCart.open(emu, sku, customerId=customer_id)
        identity = {"customer_id": customer_id}
        added = storefront_event("add_to_cart", identity, seconds_ago(5), sku=sku, cart_id=shop.id)
        answer = await bridge.post("/events", added)
        assert answer.status_code == 202
        assert answer.json()["left_to_cart"] == 1
        await post_all(bridge, *shop.notifications)
        # Then Insider gets one item_added_to_cart, the cart's
        await eventually(lambda: cart_events(emu, shop.id), what="the add")
        # When the storefront starts the checkout of that cart
        checkout = storefront_event(
            "checkout_started", identity, seconds_ago(5), cart_id=shop.id, currency="USD"
        )
        assert (await bridge.post("/events", checkout)).status_code == 202
        # Then its reminder is held (and the checkout page view is sent as before)
        handle = client.get_workflow_handle_for(CartWorkflow.run, cart_workflow_id(shop.id))
        await eventually(
            lambda: handle.query(TIMERS_QUERY, result_type=list[ArmedTimer]),
            until=lambda armed: armed == [],
            what="the reminder held",
        )
        await eventually(lambda: emu.insider_events("checkout_page_view"), what="the checkout")
        assert names(cart_events(emu, shop.id)) == ["checkout_page_view", "item_added_to_cart"]
        assert (await bridge.stats())["events_left_to_cart"] == 1


@dataclass
class CountedAdmission:
    """A cap of `room` new cart workflows."""

    room: int
    asked: list[TimerKind] = field(default_factory=list)

    async def admits_new(self, kind: TimerKind) -> bool:
        self.asked.append(kind)
        return len(self.asked) <= self.room


async def test_abandon_a_cart_beyond_the_timer_cap_is_refused_and_counted(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    _, _, (sku, *_) = shopper(emu)
    admission = CountedAdmission(room=1)
    async with serving_bridge(
        client, f"{task_queue}-journeys", emu, carts=cart_settings(), timer_admission=admission
    ) as bridge:
        # Given a cap of one cart, When two carts change (twice each)
        first = ShopCart.open(emu, sku, anonymousId="v-1")
        second = ShopCart.open(emu, sku, anonymousId="v-2")
        await post_all(bridge, *first.notifications)
        await post_all(bridge, *second.notifications)
        await post_all(bridge, first.add(sku), second.add(sku))
        # Then the first is followed, the second refused at each of its notifications
        stats = await bridge.stats()
        assert (stats["cart_workflows_started"], stats["cart_starts_refused"]) == (1, 2)
        assert admission.asked == ["cart", "cart", "cart"]
        described = await client.get_workflow_handle(cart_workflow_id(first.id)).describe()
        assert described.id == cart_workflow_id(first.id)


async def test_abandon_a_worker_killed_with_cart_timers_pending_loses_and_repeats_none(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    emu = clean_emulators
    skus = emu.seeder().catalog(2)
    env = {"CART_EVENTS_ENABLED": "true", "CART_REMINDER_DELAYS": "15s"}
    journeys = f"{task_queue}-journeys"
    first = worker_process(emu, client, task_queue, tmp_path, "worker-1", **env).start()
    try:
        async with serving_bridge(client, journeys, emu, carts=cart_settings("15s")) as bridge:
            # Given 12 carts with items, their reminders armed on a worker process
            shops = [ShopCart.open(emu, skus[n % 2], anonymousId=f"visitor-{n}") for n in range(12)]
            await post_all(bridge, *(n for shop in shops for n in shop.notifications))
            await eventually(
                lambda: len(emu.insider_events("item_added_to_cart")),
                60,
                until=lambda count: count == 12,
                what="every cart's add",
            )
            # When the worker is killed (SIGKILL) while their timers are pending
            reminded_at_kill = len(emu.insider_events("cart_abandoned"))
            assert first.process is not None
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait(10)
            # ... and a new worker starts
            with worker_process(emu, client, task_queue, tmp_path, "worker-2", **env):
                # Then every cart is reminded, once
                reminders = await eventually(
                    lambda: emu.insider_events("cart_abandoned"),
                    120,
                    until=lambda found: len(found) >= 12,
                    what="every cart's reminder",
                )
                handles = [
                    client.get_workflow_handle_for(CartWorkflow.run, cart_workflow_id(s.id))
                    for s in shops
                ]
                for handle in handles:
                    stats = await handle.query(CartWorkflow.stats)
                    assert stats.reminders == 1
    finally:
        first.stop()
    assert reminded_at_kill < 12, "killed too late: every reminder was already sent"
    groups = sorted(r["event_params"]["event_group_id"] for r in reminders)
    assert groups == sorted(shop.id for shop in shops)
    assert len(emu.insider_events("cart_abandoned")) == 12


async def test_abandon_cart_events_need_cart_events_on(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given a bridge with cart events off (the default)
    emu = clean_emulators
    _, _, (sku, *_) = shopper(emu)
    async with serving_bridge(client, worker.journey_task_queue, emu) as bridge:
        shop = ShopCart.open(emu, sku, anonymousId="v-3")
        # When a cart notification arrives, Then it is acknowledged as not used
        answer = await bridge.post(NOTIFY, shop.notifications[0])
        assert (answer.status_code, answer.json()["status"]) == (202, "ignored")


class UnansweredAdmission:
    """A cap that cannot be asked (e.g. Temporal's visibility down)."""

    async def admits_new(self, kind: TimerKind) -> bool:
        raise ConnectionError("visibility unreachable")


async def test_abandon_a_cap_that_cannot_answer_is_503_so_the_change_is_delivered_again(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    _, _, (sku, *_) = shopper(emu)
    async with serving_bridge(
        client,
        f"{task_queue}-journeys",
        emu,
        carts=cart_settings(),
        timer_admission=UnansweredAdmission(),
    ) as bridge:
        # Given a new cart, When the cap cannot say whether it may be followed
        shop = ShopCart.open(emu, sku, anonymousId="v-4")
        answer = await bridge.post(NOTIFY, shop.notifications[0])
        # Then commercetools is told to deliver again (not a 5xx of ours, nothing dropped)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"]


async def test_abandon_the_carts_of_an_erased_person_are_cancelled_before_the_erasure(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, email, (sku, other, *_) = shopper(emu)
    async with serving_bridge(
        client, worker.journey_task_queue, emu, carts=cart_settings("60s")
    ) as bridge:
        # Given a customer's cart, and a cart of a session in which they once checked out as
        # a guest with their email, each with a reminder armed
        mine = ShopCart.open(emu, sku, customerId=customer_id, customerEmail=email)
        session = ShopCart.open(emu, other, anonymousId=f"anon-{customer_id}")
        emu.place_order(sku, anonymousId=f"anon-{customer_id}", customerEmail=email)
        await post_all(bridge, *mine.notifications, *session.notifications)
        await eventually(
            lambda: all(cart_events(emu, shop.id) for shop in (mine, session)),
            what="both adds",
        )
        # When the customer is erased
        request = ErasureRequest(customer_id=customer_id)
        await (await start_erasure(client, worker.task_queue, request)).result()
        # Then both carts' workflows ended, cancelled: no reminder recreates the profile
        for shop in (mine, session):
            ended = await cart_ended(client, shop.id)
            assert (ended.ending, ended.reason) == ("cancelled", "customer erased")
