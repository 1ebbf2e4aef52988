"""The webhook bridge over HTTP, journeys on the real worker, Insider emulator as the judge."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from bridge.reading import MAX_DELIVERY_BODY_BYTES, MAX_EVENTS_BODY_BYTES
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import TemporalSettings
from ct_insider.deadletters import DeadLetter, DeadLetterStore
from ct_insider.journeys.signals import MAX_SIGNAL_BYTES, shard_of
from ct_insider.sync.redrive import is_sync_letter
from ct_insider.temporal import connect
from emulators.process import ManagedProcess, free_port, temporal_dev_server_command
from starters.dlq import retry
from tests.bridge_helpers import (
    ENVELOPES,
    SHARDS,
    TOKEN,
    message,
    seconds_ago,
    serving_bridge,
    settled_shards,
    stored_letters,
    storefront_event,
)
from tests.conftest import PROJECT_KEY, Emulators, eventually, running_worker
from workers.main import Workers
from workflows.journey_shard import JourneyShardWorkflow, ShardStats, shard_workflow_id

pytestmark = pytest.mark.integration


def profile_of(emu: Emulators, **identifier: str) -> dict[str, Any] | None:
    [(kind, value)] = identifier.items()
    for user in emu.insider_users():
        if user["identifiers"].get(kind) == value:
            return user
    return None


async def test_authentication_and_malformed_requests(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    async with serving_bridge(client, worker.journey_task_queue, clean_emulators) as bridge:
        event = storefront_event("product_view", {"anonymous_id": "a-1"}, seconds_ago(5), sku="S")
        assert (await bridge.post("/events", event, token=None)).status_code == 401
        assert (await bridge.post("/events", event, token="wrong-token")).status_code == 401
        assert (await bridge.post("/webhooks/commercetools", {}, token=None)).status_code == 401
        async with httpx.AsyncClient() as http:
            # a push subscription that cannot set headers puts the token in the query string
            by_query = await http.post(f"{bridge.url}/events?token={TOKEN}", json=event)
            assert by_query.status_code == 202
            malformed = await http.post(
                f"{bridge.url}/webhooks/commercetools",
                content=b"{not json",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert malformed.status_code == 400
            assert "malformed JSON" in malformed.json()["error"]
            malformed_events = await http.post(
                f"{bridge.url}/events",
                content=b"[{",
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            assert malformed_events.status_code == 400

        no_identity = {**event, "identity": {}}
        invalid = await bridge.post("/events", no_identity)
        assert invalid.status_code == 422
        assert "identity needs customer_id, anonymous_id or email" in invalid.text
        no_sku = storefront_event("add_to_cart", {"anonymous_id": "a-1"}, seconds_ago(5))
        assert "add_to_cart needs sku" in (await bridge.post("/events", no_sku)).text
        bad_message = {"notificationType": "Message", "projectKey": "p", "id": "m-1"}
        broken = await bridge.post("/webhooks/commercetools", bad_message)
        assert broken.status_code == 422
        assert "sequenceNumber" in broken.json()["error"]

        # An unknown message type is acknowledged and counted, not an error.
        cart = message("cart", "cart-1", "CartCreated")
        ignored = await bridge.post("/webhooks/commercetools", cart)
        assert ignored.status_code == 202
        assert ignored.json()["status"] == "ignored"
        # The subscription's test notification is acknowledged.
        test_notification = {
            "notificationType": "ResourceCreated",
            "projectKey": "p",
            "resource": {"typeId": "subscription", "id": "s-1"},
            "version": 1,
            "modifiedAt": "2026-11-26T00:00:00.000Z",
        }
        assert (await bridge.post("/webhooks/commercetools", test_notification)).status_code == 202
        stats = await bridge.stats()
        assert stats["ignored:CartCreated"] == 1
        assert stats["test_notification"] == 1
        assert stats["unauthorized"] == 3
        async with httpx.AsyncClient() as http:
            schema = (await http.get(f"{bridge.url}/openapi.json")).json()
        assert "StorefrontEvent" in schema["components"]["schemas"]
        assert (await bridge.post("/healthz", {})).status_code == 405
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{bridge.url}/readyz")).status_code == 200


@pytest.mark.parametrize("envelope", sorted(ENVELOPES))
async def test_customer_created_in_every_envelope_becomes_a_profile_with_sign_up(
    client: Client, worker: Workers, clean_emulators: Emulators, envelope: str
) -> None:
    emu = clean_emulators
    [(customer_id, email)] = emu.seeder().customers(1)
    customer = emu.ct("GET", f"customers/{customer_id}")
    delivery = ENVELOPES[envelope](
        message("customer", customer_id, "CustomerCreated", customer=customer)
    )
    async with serving_bridge(client, worker.journey_task_queue, emu) as bridge:
        answer = await bridge.post("/webhooks/commercetools", delivery)
        assert answer.status_code == 202, answer.text
        profile = await eventually(lambda: profile_of(emu, uuid=customer_id))
    assert profile["identifiers"]["email"] == email
    assert [e["event_name"] for e in profile["events"]] == ["sign_up_confirmation"]
    assert profile["events"][0]["_skip_hook"] is False  # live: journeys may fire


async def test_every_storefront_event_type_maps_to_its_insider_event(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    visitor = {"anonymous_id": "visitor-9"}
    product = {"sku": "SKU-1", "price": "19.99", "currency": "EUR", "name": "Mug"}
    cart = {"cart_id": "cart-9", "currency": "EUR"}
    line = {"sku": "SKU-1", "quantity": 2, "price": "19.99"}
    kinds: list[tuple[str, dict[str, Any], list[str]]] = [
        ("listing_view", {"categories": ["Kitchen", "Mugs"]}, ["listing_page_view"]),
        ("product_view", product, ["product_detail_page_view"]),
        ("wishlist_add", product, ["item_added_to_wishlist"]),
        ("add_to_cart", {**product, "quantity": 2, "cart_id": "cart-9"}, ["item_added_to_cart"]),
        ("cart_view", {**cart, "products": [line]}, ["cart_page_view"]),
        ("remove_from_cart", {**product, "cart_id": "cart-9"}, ["item_removed_from_cart"]),
        ("wishlist_remove", product, ["item_removed_from_wishlist"]),
        ("checkout_started", {**cart, "cart_total": "19.99"}, ["checkout_page_view"]),
        ("sign_in", {}, ["login"]),
    ]
    events = [
        storefront_event(
            kind, visitor, seconds_ago(100 - n), locale="de-DE", country="DE", channel="app", **f
        )
        for n, (kind, f, _) in enumerate(kinds)
    ]
    async with serving_bridge(client, worker.journey_task_queue, clean_emulators) as bridge:
        answer = await bridge.post("/events", {"events": events})
        assert answer.status_code == 202, answer.text
        expected = [name for _, _, names in kinds for name in names]
        profile = await eventually(
            lambda: (
                (p := profile_of(clean_emulators, **{"custom.ct_anonymous_id": "visitor-9"}))
                and len(p["events"]) == len(expected)
                and p
            )
        )
    assert [e["event_name"] for e in profile["events"]] == expected
    by_name = {e["event_name"]: e["event_params"] for e in profile["events"]}
    assert by_name["item_added_to_cart"]["quantity"] == 2
    assert by_name["item_added_to_cart"]["unit_sale_price"] == 19.99
    assert by_name["cart_page_view"]["event_group_id"] == "cart-9"
    assert by_name["listing_page_view"]["taxonomy"] == ["Kitchen", "Mugs"]
    # the market signals segments are built on
    assert by_name["product_detail_page_view"]["locale"] == "de_DE"
    assert by_name["product_detail_page_view"]["custom"]["channel"] == "app"
    assert by_name["product_detail_page_view"]["custom"]["country"] == "DE"
    assert by_name["login"]["currency"] == "EUR"  # carried over from earlier events


async def test_deliveries_repeated_three_times_in_shuffled_order_arrive_once_in_order(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given 6 customers, each with 6 storefront events and one order
    emu = clean_emulators
    seeder = emu.seeder()
    customers = seeder.customers(6)
    skus = seeder.catalog(3)
    deliveries: list[tuple[str, dict[str, Any]]] = []
    expected: dict[str, list[str]] = {}
    for n, (customer_id, email) in enumerate(customers):
        identity = {"customer_id": customer_id}
        names = []
        for step in range(6):
            kind = "product_view" if step % 2 == 0 else "add_to_cart"
            event = storefront_event(
                kind,
                identity,
                seconds_ago(300 - step * 10),
                sku=skus[step % 3],
                currency="USD",
                cart_id=f"cart-{n}",
            )
            deliveries.append(("/events", event))
            names.append(
                "product_detail_page_view" if kind == "product_view" else "item_added_to_cart"
            )
        order = emu.place_order(skus[0], customerId=customer_id, customerEmail=email)
        created = message("order", order["id"], "OrderCreated", order=order, at=seconds_ago(200))
        deliveries.append(("/webhooks/commercetools", created))
        expected[customer_id] = [*names, "purchase"]

    # When every delivery arrives three times, shuffled, at a shard that gathers until it
    # holds the 42 unique ones (its window far longer than the posts take, however slow)
    repeated = deliveries * 3
    random.Random(4).shuffle(repeated)
    async with serving_bridge(
        client, worker.journey_task_queue, emu, shards=1, gather_seconds=600, max_batch=42
    ) as bridge:
        answers = await asyncio.gather(*(bridge.post(path, body) for path, body in repeated))
        assert {a.status_code for a in answers} == {202}
        await settled_shards(client, worker.journey_task_queue, 1, received=len(repeated))

    # Then Insider holds exactly the unique events, in each customer's order
    for customer_id, names in expected.items():
        profile = profile_of(emu, uuid=customer_id)
        assert profile is not None
        assert [e["event_name"] for e in profile["events"]] == names
        stamps = [e["timestamp"] for e in profile["events"]]
        assert stamps == sorted(stamps)


async def test_anonymous_visitor_merges_into_the_customer_on_sign_in(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, _, sku = emu.shopper()
    visitor = {"anonymous_id": "anon-77"}
    async with serving_bridge(client, worker.journey_task_queue, emu) as bridge:
        # Given a visitor browsing anonymously, and the customer's known profile
        await bridge.post(
            "/events", storefront_event("product_view", visitor, seconds_ago(60), sku=sku)
        )
        await eventually(lambda: profile_of(emu, **{"custom.ct_anonymous_id": "anon-77"}))
        await bridge.post(
            "/events",
            storefront_event(
                "product_view", {"customer_id": customer_id}, seconds_ago(50), sku=sku
            ),
        )
        await eventually(lambda: profile_of(emu, uuid=customer_id))
        assert len(emu.insider_users()) == 2

        # When the visitor signs in
        both = {"customer_id": customer_id, "anonymous_id": "anon-77"}
        await bridge.post("/events", storefront_event("sign_in", both, seconds_ago(40)))
        await eventually(lambda: len(emu.insider_users()) == 1)

        # Then later events of either id land on the merged profile
        await bridge.post(
            "/events",
            storefront_event("add_to_cart", visitor, seconds_ago(30), sku=sku, cart_id="c"),
        )
        await bridge.post(
            "/events",
            storefront_event(
                "wishlist_add", {"customer_id": customer_id}, seconds_ago(20), sku=sku
            ),
        )
        profile = await eventually(
            lambda: (p := profile_of(emu, uuid=customer_id)) and len(p["events"]) == 5 and p
        )
    assert len(emu.insider_users()) == 1
    assert profile["identifiers"]["custom.ct_anonymous_id"] == "anon-77"
    assert sorted(e["event_name"] for e in profile["events"]) == sorted(
        [
            "product_detail_page_view",
            "product_detail_page_view",
            "login",
            "item_added_to_cart",
            "item_added_to_wishlist",
        ]
    )


async def test_customer_changes_email_change_and_deletion(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    [(customer_id, email)] = emu.seeder().customers(1)
    async with serving_bridge(client, worker.journey_task_queue, emu) as bridge:
        customer = emu.ct("GET", f"customers/{customer_id}")
        await bridge.post(
            "/webhooks/commercetools",
            message("customer", customer_id, "CustomerCreated", customer=customer),
        )
        await eventually(lambda: profile_of(emu, uuid=customer_id))

        # When the customer's name and email change in commercetools
        updated = emu.ct(
            "POST",
            f"customers/{customer_id}",
            {
                "version": customer["version"],
                "actions": [
                    {"action": "setFirstName", "firstName": "Nova"},
                    {"action": "changeEmail", "email": "nova@example.com"},
                ],
            },
        )
        version = updated["version"]
        await bridge.post(
            "/webhooks/commercetools",
            message(
                "customer", customer_id, "CustomerFirstNameSet", sequence=2, version=version - 1
            ),
        )
        await bridge.post(
            "/webhooks/commercetools",
            message(
                "customer",
                customer_id,
                "CustomerEmailChanged",
                sequence=3,
                version=version,
                email="nova@example.com",
                oldEmail=email,
            ),
        )
        # Then the profile follows: new name, and the email identifier moved
        profile = await eventually(
            lambda: (
                (p := profile_of(emu, uuid=customer_id))
                and p["identifiers"].get("email") == "nova@example.com"
                and p
            )
        )
        assert profile["attributes"]["name"] == "Nova"

        # When the customer is deleted
        await bridge.post(
            "/webhooks/commercetools",
            message("customer", customer_id, "CustomerDeleted", sequence=4, version=version + 1),
        )
        # Then Insider erases the user
        await eventually(lambda: profile_of(emu, uuid=customer_id) is None)


async def test_an_order_seen_by_the_bridge_and_a_backfill_is_one_purchase(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    from starters.backfill import start_backfill
    from workflows.backfill import BackfillInput

    emu = clean_emulators
    customer_id, email, sku = emu.shopper()
    order = emu.place_order(sku, quantity=3, customerId=customer_id, customerEmail=email)
    async with serving_bridge(client, worker.journey_task_queue, emu) as bridge:
        # Given the OrderCreated message arrives without its payload (too large to include)
        created = message("order", order["id"], "OrderCreated")
        created["payloadNotIncluded"] = {"reason": "too large", "payloadType": "OrderCreated"}
        assert (await bridge.post("/webhooks/commercetools", created)).status_code == 202
        await eventually(lambda: emu.insider_events("purchase"))
    # When a backfill reads the same order
    await (await start_backfill(client, worker.task_queue, BackfillInput(target="orders"))).result()
    # Then there is one purchase, on the customer's profile
    [purchase] = emu.insider_events("purchase")
    assert purchase["event_params"]["quantity"] == 3
    assert profile_of(emu, uuid=customer_id) is not None


async def test_temporal_down_answers_503_and_the_redelivery_is_not_lost(
    clean_emulators: Emulators, task_queue: str, tmp_path: Path
) -> None:
    # Given a bridge and a worker on a Temporal server of their own (state in a file)
    port, ui_port = free_port(), free_port()
    server = ManagedProcess(
        "temporal",
        temporal_dev_server_command(port, ui_port, db_file=tmp_path / "temporal.db", headless=True),
        log_path=tmp_path / "temporal.log",
    )
    server.start()
    settings = TemporalSettings(address=f"127.0.0.1:{port}")

    async def connected() -> Client | None:
        try:
            return await connect(settings)
        except RuntimeError:
            return None

    # the worker needs a connected (not lazy) client
    temporal: Client = await eventually(connected, what="a connection to the new server")
    event = storefront_event("product_view", {"anonymous_id": "a-503"}, seconds_ago(30), sku="S-1")
    try:
        async with (
            running_worker(temporal, task_queue, clean_emulators) as workers,
            serving_bridge(temporal, workers.journey_task_queue, clean_emulators) as bridge,
        ):
            # When Temporal goes down (its port kept for its restart)
            server.stop()
            free_port(port)
            refused = await bridge.post("/events", event)
            # Then the bridge says so, and the sender keeps the event
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "5"
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{bridge.url}/readyz")).status_code == 503

            # When Temporal is back and the sender delivers again
            server.start()
            await eventually(
                lambda: bridge.post("/events", event),
                30,
                until=lambda answer: answer.status_code == 202,
                what="the bridge to take the event again",
            )
            # Then the event reaches Insider, once
            profile = await eventually(
                lambda: profile_of(clean_emulators, **{"custom.ct_anonymous_id": "a-503"}), 60
            )
            assert [e["event_name"] for e in profile["events"]] == ["product_detail_page_view"]
    finally:
        server.stop()


def shard_handle(
    client: Client, journey_task_queue: str, routing_key: str
) -> WorkflowHandle[JourneyShardWorkflow, ShardStats]:
    shard = shard_of(routing_key, SHARDS)
    return client.get_workflow_handle_for(
        JourneyShardWorkflow.run, shard_workflow_id(journey_task_queue, shard)
    )


async def shard_stats_when(
    handle: WorkflowHandle[JourneyShardWorkflow, ShardStats],
    check: Callable[[ShardStats], bool],
    within: float = 20.0,
) -> ShardStats:
    stats: ShardStats = await eventually(
        lambda: handle.query(JourneyShardWorkflow.stats), within, until=check, what="shard stats"
    )
    return stats


def delivered_at_least(count: int) -> Callable[[ShardStats], bool]:
    return lambda stats: stats.delivered >= count


async def test_shard_dedupe_survives_continue_as_new(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    visitor = {"anonymous_id": "a-can"}
    events = [
        storefront_event("product_view", visitor, seconds_ago(100 - n), sku=f"S-{n}")
        for n in range(12)
    ]
    async with serving_bridge(
        client, worker.journey_task_queue, clean_emulators, max_history_events=100
    ) as bridge:
        # Given a shard that continues-as-new every 100 history events (its events delivered
        # three at a time)
        handle = shard_handle(client, worker.journey_task_queue, "anonymous-a-can")
        for start in range(0, 12, 3):
            await bridge.post("/events", {"events": events[start : start + 3]})
            await shard_stats_when(handle, delivered_at_least(start + 3))
        for n in range(80):  # other visitors' traffic on every shard grows the histories
            await bridge.post(
                "/events",
                storefront_event("listing_view", {"anonymous_id": f"o-{n}"}, seconds_ago(50)),
            )
        # When early events are delivered again, after continue-as-new
        await bridge.post("/events", {"events": events[:6]})
        # Then they are recognised: Insider holds each of the 12 events once
        await settled_shards(client, worker.journey_task_queue, SHARDS, received=98)
        stats = await handle.query(JourneyShardWorkflow.stats)
    profile = profile_of(clean_emulators, **{"custom.ct_anonymous_id": "a-can"})
    assert profile is not None
    assert len(profile["events"]) == 12
    assert stats.duplicates >= 6
    assert stats.runs >= 2  # continued as new, dedupe memory carried
    assert stats.profile_reads == 0  # recognised by its memory, not by asking Insider


async def test_a_redelivery_older_than_the_dedupe_memory_is_settled_by_event_id(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    visitor = {"anonymous_id": "a-late"}
    # Two views of one product in one second: two events, told apart by their ids.
    at = seconds_ago(3600)
    late = storefront_event("product_view", visitor, at, sku="S-late")
    twin = storefront_event("product_view", visitor, at, sku="S-late")

    def stored() -> list[Any]:
        profile = profile_of(clean_emulators, **{"custom.ct_anonymous_id": "a-late"})
        return list((profile or {}).get("events") or [])

    # (Without the dedupe archive, which would recognise the first without reading Insider:
    # tests/integration/test_dedupe_archive.py.)
    async with serving_bridge(
        client,
        worker.journey_task_queue,
        clean_emulators,
        seen_capacity=16,
        archive_retention_minutes=0,
    ) as bridge:
        # Given an event delivered, then forgotten by a shard whose memory holds 16 keys
        await bridge.post("/events", late)
        await eventually(lambda: len(stored()) == 1)
        for n in range(80):
            await bridge.post(
                "/events",
                storefront_event("listing_view", {"anonymous_id": f"x-{n}"}, datetime.now(UTC)),
            )
        # When the sender delivers it again, with its twin that Insider has not seen
        await bridge.post("/events", {"events": [late, twin]})
        # Then the shard asks Insider, finds the first by its event id and sends the twin
        await eventually(lambda: len(stored()) == 2)
        await settled_shards(client, worker.journey_task_queue, SHARDS, received=83)
        stats = await shard_handle(client, worker.journey_task_queue, "anonymous-a-late").query(
            JourneyShardWorkflow.stats
        )
    assert sorted(e["event_params"]["custom"]["event_id"] for e in stored()) == sorted(
        [late["event_id"], twin["event_id"]]
    )
    assert stats.found_in_insider == 1
    assert stats.resent == 1
    assert stats.profile_reads == 1


WEBHOOK = "/webhooks/commercetools"


def without_payload(delivery: dict[str, Any]) -> dict[str, Any]:
    """A message commercetools sent without its payload (too large): the bridge reads it."""
    return {**delivery, "payloadNotIncluded": {"reason": "too large", "payloadType": "x"}}


def scopes_without_orders() -> str:
    """An API client that may read customers and write letters, but not read orders."""
    return f"view_customers:{PROJECT_KEY} manage_key_value_documents:{PROJECT_KEY}"


def paid_order(emu: Emulators, sku: str, **cart: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order placed with `cart`'s fields, and a payment added to it."""
    order = emu.place_order(sku, **cart)
    payment = emu.ct("POST", "payments", {"amountPlanned": order["totalPrice"]})
    order = emu.ct(
        "POST",
        f"orders/{order['id']}",
        {
            "version": order["version"],
            "actions": [
                {"action": "addPayment", "payment": {"typeId": "payment", "id": payment["id"]}}
            ],
        },
    )
    return order, payment


async def test_a_delivery_that_names_nobody_is_dead_lettered_and_redriven_once_fixed(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    [sku, *_] = emu.seeder().catalog(1)
    # Given an order that names nobody (no customer, email or anonymous id), and its payment
    order, payment = paid_order(emu, sku)
    async with (
        serving_bridge(client, worker.journey_task_queue, emu) as bridge,
        CommercetoolsClient(emu.ct_settings()) as ct,
    ):
        # When its OrderCreated message and a message of its payment arrive
        created = await bridge.post(
            WEBHOOK, message("order", order["id"], "OrderCreated", order=order)
        )
        paid = await bridge.post(
            WEBHOOK, message("payment", payment["id"], "PaymentTransactionAdded")
        )
        # Then both are acknowledged (commercetools redelivers anything else), as dead letters
        assert (created.status_code, paid.status_code) == (202, 202), created.text
        assert created.json()["status"] == paid.json()["status"] == "dead-lettered"
        assert (await bridge.stats())["dead_lettered:names_nobody"] == 2
        # And the order has one letter saying why, which a re-drive reads again
        store = DeadLetterStore(ct)
        [letter] = await store.list()
        assert (letter.entity, letter.record_id, letter.path, letter.run) == (
            "order",
            order["id"],
            "realtime",
            "bridge",
        )
        assert letter.attempts == 2
        assert "names no customer, visitor or email" in letter.reasons[0]
        assert is_sync_letter(letter)

        # When the order gets its customer's email and the letter is re-driven
        emu.ct(
            "POST",
            f"orders/{order['id']}",
            {
                "version": order["version"],
                "actions": [{"action": "setCustomerEmail", "email": "guest@example.com"}],
            },
        )
        report = await retry(
            store,
            client,
            task_queue=worker.task_queue,
            journey_task_queue=worker.journey_task_queue,
            shards=SHARDS,
            keys=[letter.key],
        )
        # Then the purchase reaches Insider and the letter is gone
        assert report.sync.delivered == [letter.key]
        assert len(emu.insider_events("purchase")) == 1
        assert await store.list() == []


async def test_a_read_commercetools_refuses_is_dead_lettered_naming_the_scope_logged_once(
    client: Client,
    worker: Workers,
    clean_emulators: Emulators,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = clean_emulators
    customer_id, email, sku = emu.shopper()
    order, payment = paid_order(emu, sku, customerId=customer_id, customerEmail=email)
    limited = emu.ct_settings().model_copy(update={"scopes": scopes_without_orders()})
    capsys.readouterr()
    # Given a bridge whose API client may not read orders
    async with serving_bridge(
        client, worker.journey_task_queue, emu, ct_settings=limited
    ) as bridge:
        # When two order messages without their payload and two payment messages arrive
        deliveries = [
            without_payload(message("order", order["id"], kind, sequence=n))
            for n, kind in enumerate(("OrderCreated", "OrderPaymentAdded"), 1)
        ] + [
            message("payment", payment["id"], "PaymentTransactionAdded", sequence=n) for n in (1, 2)
        ]
        answers = [await bridge.post(WEBHOOK, delivery) for delivery in deliveries]
        # Then each is acknowledged as a dead letter: no retry can grant a scope
        assert [a.status_code for a in answers] == [202] * 4, answers[0].text
        assert {a.json()["status"] for a in answers} == {"dead-lettered"}
        assert (await bridge.stats())["dead_lettered:refused_by_commercetools"] == 4
    # And the letters name the scope the API client lacks
    letters = await stored_letters(emu)
    by_entity: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        by_entity.setdefault(letter.entity, []).append(letter)
    [order_letter] = by_entity["order"]  # one per order: a re-drive reads it again
    assert (order_letter.record_id, order_letter.attempts) == (order["id"], 2)
    assert is_sync_letter(order_letter)
    payment_letters = by_entity["notification"]  # one per message: read by no re-drive
    assert len(payment_letters) == 2
    assert not any(is_sync_letter(letter) for letter in payment_letters)
    for letter in letters:
        assert "view_orders" in letter.reasons[0]
        assert "lacks that scope" in letter.reasons[0]
    # And each kind of problem is logged once, not once per delivery
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("delivery dead-lettered") == 2


async def test_a_letter_the_store_does_not_take_is_503_so_nothing_is_lost(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, email, sku = emu.shopper()
    order = emu.place_order(sku, customerId=customer_id, customerEmail=email)
    # Given a bridge whose API client may neither read orders nor write dead letters
    bare = emu.ct_settings().model_copy(update={"scopes": f"view_customers:{PROJECT_KEY}"})
    async with serving_bridge(client, worker.journey_task_queue, emu, ct_settings=bare) as bridge:
        # When a message arrives that the bridge must read the order for
        answer = await bridge.post(
            WEBHOOK, without_payload(message("order", order["id"], "OrderCreated"))
        )
        # Then it is not acknowledged: the sender keeps it until its letter can be stored
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "5"
        stats = await bridge.stats()
    assert stats["unavailable"] == 1
    assert not any(name.startswith("dead_lettered") for name in stats)


async def test_commercetools_unreachable_is_503_with_retry_after(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    customer_id, email, sku = emu.shopper()
    order = emu.place_order(sku, customerId=customer_id, customerEmail=email)
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = emu.ct_settings().model_copy(update={"api_url": nowhere, "auth_url": nowhere})
    # Given a bridge that cannot reach commercetools
    async with serving_bridge(
        client, worker.journey_task_queue, emu, ct_settings=unreachable
    ) as bridge:
        # When a message arrives that the bridge must read the order for
        answer = await bridge.post(
            WEBHOOK, without_payload(message("order", order["id"], "OrderCreated"))
        )
        # Then it is not accepted, and the sender is told to deliver it again
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "5"
        assert (await bridge.stats())["unavailable"] == 1


async def test_a_batch_with_refused_events_stores_the_others_and_lists_each_refusal(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    visitor = {"anonymous_id": "a-mixed"}
    good = [
        storefront_event("product_view", visitor, seconds_ago(30 - n), sku=f"S-{n}")
        for n in range(2)
    ]
    nobody = {**storefront_event("product_view", visitor, seconds_ago(20), sku="S"), "identity": {}}
    lines = [
        {"sku": f"SKU-{n}", "price": "1", "name": "a long product name " * 40} for n in range(100)
    ]
    oversized = storefront_event(
        "cart_view", visitor, seconds_ago(10), cart_id="c-1", currency="EUR", products=lines
    )
    batch = {"events": [good[0], nobody, good[1], oversized]}

    def stored() -> list[Any]:
        profile = profile_of(clean_emulators, **{"custom.ct_anonymous_id": "a-mixed"})
        return list((profile or {}).get("events") or [])

    async with serving_bridge(client, worker.journey_task_queue, clean_emulators) as bridge:
        # When a batch arrives with an event that names nobody and one over the signal budget
        answer = await bridge.post("/events", batch)
        # Then it is answered 422, listing each refused event and why; the others are stored
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert body["accepted"] == 2
        refused = {r["index"]: r for r in body["refused"]}
        assert sorted(refused) == [1, 3]
        assert refused[1]["event_id"] == nobody["event_id"]
        assert refused[1]["detail"][0]["loc"] == ["body", "events", 1, "identity"]
        assert "identity needs customer_id" in refused[1]["detail"][0]["msg"]
        assert refused[3]["detail"][0]["loc"] == ["body", "events", 3]
        assert f"limit of {MAX_SIGNAL_BYTES:,} bytes" in refused[3]["detail"][0]["msg"]
        await eventually(lambda: len(stored()) == 2)
        stats = await bridge.stats()
        assert (stats["events"], stats["events_refused:invalid"]) == (2, 1)
        assert stats["events_refused:oversized"] == 1

        # When the sender sends the same batch again
        again = await bridge.post("/events", batch)
        # Then the same answer, and the shard recognises the stored events as duplicates
        assert again.status_code == 422
        handle = shard_handle(client, worker.journey_task_queue, "anonymous-a-mixed")
        await shard_stats_when(handle, lambda stats: stats.duplicates == 2)
    assert sorted(e["event_params"]["custom"]["event_id"] for e in stored()) == sorted(
        e["event_id"] for e in good
    )


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b'{"a":' * depth + leaf + b"}" * depth


async def test_bad_input_never_gets_a_5xx(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    [sku, *_] = emu.seeder().catalog(1)
    nobody, payment = paid_order(emu, sku)
    visitor = {"anonymous_id": "a-bad"}
    event = storefront_event("product_view", visitor, seconds_ago(5), sku="S")
    huge_lines = [
        {"sku": f"SKU-{n}", "price": "1", "name": "n" * 1024, "url": "u" * 2048} for n in range(100)
    ]
    oversized = storefront_event(
        "cart_view", visitor, seconds_ago(5), cart_id="c", currency="EUR", products=huge_lines
    )
    created = message("order", nobody["id"], "OrderCreated", order=nobody)
    deep_order = json.dumps(message("order", nobody["id"], "OrderCreated")).encode()
    deep_order = deep_order[:-1] + b', "order": ' + nested(900) + b"}"
    # (path, body, content type, expected status)
    cases: list[tuple[str, bytes, str, int]] = [
        (WEBHOOK, json.dumps(created).encode(), "application/json", 202),
        (
            WEBHOOK,
            json.dumps(message("payment", payment["id"], "PaymentTransactionAdded")).encode(),
            "application/json",
            202,
        ),
        (
            WEBHOOK,
            json.dumps({**created, "order": {**nobody, "customerId": 42}}).encode(),
            "application/json",
            202,
        ),
        (WEBHOOK, deep_order, "application/json", 202),
        (
            WEBHOOK,
            json.dumps(without_payload(message("order", "no-such-order", "OrderCreated"))).encode(),
            "application/json",
            202,
        ),
        (WEBHOOK, b'{"id": "\xff\xfe"}', "application/json", 400),
        (WEBHOOK, b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
        (WEBHOOK, nested(900), "application/json", 422),
        (WEBHOOK, b" " * (MAX_DELIVERY_BODY_BYTES + 1), "application/json", 413),
        ("/events", json.dumps(oversized).encode(), "application/json", 422),
        (
            "/events",
            json.dumps({**event, "identity": {}}).encode(),
            "application/json",
            422,
        ),
        ("/events", json.dumps(event).encode(), "text/plain", 415),
        ("/events", json.dumps(event).encode(), "", 415),
        ("/events", b'{"event_id": "\xff\xfe"}', "application/json", 400),
        ("/events", b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
        ("/events", nested(900), "application/json", 422),
        ("/events", json.dumps([event] * 501).encode(), "application/json", 422),
        ("/events", b" " * (MAX_EVENTS_BODY_BYTES + 1), "application/json", 413),
    ]
    limited = emu.ct_settings().model_copy(update={"scopes": scopes_without_orders()})
    refused_reads = [
        without_payload(message("order", nobody["id"], "OrderCreated")),
        message("payment", payment["id"], "PaymentTransactionAdded"),
    ]
    async with (
        serving_bridge(client, worker.journey_task_queue, emu) as bridge,
        serving_bridge(client, worker.journey_task_queue, emu, ct_settings=limited) as scoped,
    ):
        # When each bad input arrives
        answers = [
            await bridge.post_raw(path, body, content_type) for path, body, content_type, _ in cases
        ]
        scoped_answers = [await scoped.post(WEBHOOK, delivery) for delivery in refused_reads]
        stats, scoped_stats = await bridge.stats(), await scoped.stats()
    # Then none is answered 5xx, and each gets its own status
    statuses = [answer.status_code for answer in answers + scoped_answers]
    assert all(status < 500 for status in statuses), statuses
    assert statuses == [case[3] for case in cases] + [202, 202]
    # And /stats counts each by what happened to it
    assert stats["dead_lettered:names_nobody"] == 2
    assert stats["dead_lettered:unreadable"] == 2
    assert stats["gone:OrderCreated"] == 1
    assert stats["events_refused:oversized"] == 1
    assert stats["events_refused:invalid"] == 2  # one event each: nobody, and nested
    assert stats["malformed"] == 4
    assert stats["invalid"] == 2  # an envelope that is no delivery, a batch over 500
    assert stats["too_large"] == 2
    assert stats["unsupported_media_type"] == 2
    assert "events" not in stats
    assert scoped_stats["dead_lettered:refused_by_commercetools"] == 2
    # And the dead letters hold the order (names nobody, unreadable, its read refused) and
    # the payment message whose orders could not be read
    letters = await stored_letters(emu)
    assert sorted((letter.entity, letter.attempts) for letter in letters) == [
        ("notification", 1),
        ("order", 5),
    ]
