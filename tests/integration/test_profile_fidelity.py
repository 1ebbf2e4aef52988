"""Profile fidelity: the customer record is the authority on a registered person's profile."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client

from ct_insider.deadletters import CONTAINER as DEAD_LETTERS
from ct_insider.mapping.config import MappingConfig
from starters.backfill import start_backfill
from tests.bridge_helpers import message, seconds_ago, serving_bridge, storefront_event
from tests.conftest import Emulators, eventually, running_worker
from workers.main import Workers
from workflows.backfill import BackfillInput

pytestmark = pytest.mark.integration


def profile_with_email(emulators: Emulators, email: str) -> dict[str, Any]:
    [user] = [u for u in emulators.insider_users() if u["identifiers"].get("email") == email]
    return user


async def test_guest_order_with_a_registered_email_keeps_the_customers_profile(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given a registered customer in Germany, synced to Insider
    emulators = clean_emulators
    [sku, *_] = emulators.seeder().catalog(1)
    registered = emulators.ct(
        "POST",
        "customers",
        {
            "email": "Jana.Registered@example.com",
            "password": "not-a-real-password",
            "addresses": [{"country": "DE", "city": "Berlin", "streetName": "Hauptstr."}],
            "defaultShippingAddress": 0,
        },
    )["customer"]
    # (the emulator drops a draft's locale; the update action keeps it)
    actions = [{"action": "setLocale", "locale": "de-DE"}]
    emulators.ct("POST", f"customers/{registered['id']}", {"version": 1, "actions": actions})
    await (
        await start_backfill(client, worker.task_queue, BackfillInput(target="customers"))
    ).result()
    # and two guest orders shipped to the US: one with the customer's email (another case),
    # one with an email no customer has
    address = {"country": "US", "city": "Boston", "streetName": "Main St"}
    for email in ("jana.registered@example.com", "walk.in@example.com"):
        emulators.place_order(
            sku,
            customerEmail=email,
            shippingAddress=address,
            currency="USD",
            country="US",
            locale="en-US",
        )

    # When the orders are backfilled
    result = await (
        await start_backfill(client, worker.task_queue, BackfillInput(target="orders"))
    ).result()

    # Then both purchases are on their profiles, and the registered customer's profile keeps
    # the country, city and language of the customer record
    assert result.phases[0].stats.sent == 2
    customer = profile_with_email(emulators, "jana.registered@example.com")
    assert customer["identifiers"]["uuid"] == registered["id"]
    attributes = customer["attributes"]
    assert (attributes["country"], attributes["city"], attributes["language"]) == (
        "DE",
        "Berlin",
        "de_DE",
    )
    assert [e["event_name"] for e in customer["events"]] == ["purchase"]
    # while a guest without a customer record takes its order's country and language
    guest = profile_with_email(emulators, "walk.in@example.com")
    assert "uuid" not in guest["identifiers"]
    assert (guest["attributes"]["country"], guest["attributes"]["language"]) == ("US", "en_US")


async def test_deletion_reaches_the_insider_user_keyed_by_customer_key(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given uuid_source "key": two customers with keys became Insider users through the bridge
    emu = clean_emulators
    customers = [
        emu.ct(
            "POST",
            "customers",
            {"email": f"{key}@example.com", "password": "not-a-real-password", "key": key},
        )["customer"]
        for key in ("kept-key", "gone-key")
    ]
    mapping = MappingConfig(uuid_source="key")
    async with (
        running_worker(client, task_queue, emu, mapping=mapping) as worker,
        serving_bridge(client, worker.journey_task_queue, emu) as bridge,
    ):
        for customer in customers:
            created = message("customer", customer["id"], "CustomerCreated", customer=customer)
            assert (await bridge.post("/webhooks/commercetools", created)).status_code == 202
        await eventually(lambda: all(insider_uuid(emu, c["key"]) for c in customers))
        kept, gone = customers

        # When one is deleted (the message names its key, as commercetools does), and a
        # deletion of the other arrives without user-provided identifiers
        for customer in customers:
            emu.ct("DELETE", f"customers/{customer['id']}?version={customer['version']}")
        deleted = message("customer", gone["id"], "CustomerDeleted", sequence=2, version=2)
        deleted["resourceUserProvidedIdentifiers"] = {"key": gone["key"]}
        nameless = message("customer", kept["id"], "CustomerDeleted", sequence=2, version=2)
        for body in (deleted, nameless):
            assert (await bridge.post("/webhooks/commercetools", body)).status_code == 202

        # Then the user keyed by the named key is erased in Insider
        await eventually(lambda: insider_uuid(emu, gone["key"]) is None)
        # and the deletion that cannot be resolved is parked with its reason, not dropped
        letters = await eventually(lambda: dead_letters(emu))
        [letter] = letters
        assert letter["value"]["record_id"] == kept["id"]
        assert "names no key" in letter["value"]["reasons"][0]
        assert insider_uuid(emu, kept["key"]) is not None


def insider_uuid(emulators: Emulators, uuid: str) -> dict[str, Any] | None:
    found = [u for u in emulators.insider_users() if u["identifiers"].get("uuid") == uuid]
    return found[0] if found else None


def dead_letters(emulators: Emulators) -> list[dict[str, Any]]:
    body = emulators.ct("GET", f"custom-objects/{DEAD_LETTERS}?limit=50")
    return list(body["results"])


async def test_a_listing_view_reaches_insider_with_its_path_and_the_products_shown(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given a storefront reporting a category page with the products it showed
    shown = [
        {"sku": "RUN-42", "price": "129.99", "categories": ["Shoes", "Running"]},
        {"sku": "RUN-43", "price": "119.99", "categories": ["Shoes", "Running"]},
    ]
    event = storefront_event(
        "listing_view",
        {"anonymous_id": "visitor-listing"},
        seconds_ago(5),
        url="https://shop.example.com/c/running",
        products=shown,
    )
    # When it is posted to the bridge
    async with serving_bridge(client, worker.journey_task_queue, clean_emulators) as bridge:
        answer = await bridge.post("/events", event)
        assert answer.status_code == 202, answer.text
        stored = await eventually(lambda: clean_emulators.insider_events("listing_page_view"))
    # Then Insider holds one listing view: the path its products share, its url, and the
    # SKUs shown in order
    [listing] = stored
    params = listing["event_params"]
    assert params["taxonomy"] == ["Shoes", "Running"]
    assert params["url"] == "https://shop.example.com/c/running"
    assert params["custom"]["product_ids"] == ["RUN-42", "RUN-43"]
