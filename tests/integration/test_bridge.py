"""The webhook bridge over HTTP, journeys on the real worker, Insider emulator as the judge."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from ct_insider.config import TemporalSettings
from ct_insider.journeys.signals import shard_of
from ct_insider.temporal import connect
from emulators.process import ManagedProcess, free_port, temporal_dev_server_command
from tests.bridge_helpers import (
    ENVELOPES,
    SHARDS,
    TOKEN,
    message,
    seconds_ago,
    serving_bridge,
    settled_shards,
    storefront_event,
)
from tests.conftest import Emulators, eventually, running_worker
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
        # Given a shard that continues-as-new every 100 history events
        for start in range(0, 12, 3):
            await bridge.post("/events", {"events": events[start : start + 3]})
            await asyncio.sleep(0.3)
        for n in range(80):  # other visitors' traffic on every shard grows the histories
            await bridge.post(
                "/events",
                storefront_event("listing_view", {"anonymous_id": f"o-{n}"}, seconds_ago(50)),
            )
        handle = shard_handle(client, worker.journey_task_queue, "anonymous-a-can")
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

    async with serving_bridge(
        client, worker.journey_task_queue, clean_emulators, seen_capacity=16
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
