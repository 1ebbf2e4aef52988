"""The Insider emulator and our Insider client over real HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderConfigurationError, InsiderRateLimited
from ct_insider.insider.models import Attributes, CatalogLocale, Event, Identifiers, User
from ct_insider.logging import pii_fingerprint
from ct_insider.retry import Backoff
from tests.conftest import Emulators, eventually

pytestmark = pytest.mark.integration

HEADERS = {"X-PARTNER-NAME": "testpartner", "X-REQUEST-TOKEN": "ucd-token"}


def purchase(**params: Any) -> Event:
    base = {
        "product_id": "SKU-1",
        "currency": "USD",
        "unit_sale_price": 9.5,
        "quantity": 1,
        "event_group_id": "ORD-1",
    }
    base.update(params)
    return Event(
        event_name="purchase",
        timestamp="2026-11-26T10:00:00Z",
        event_params={k: v for k, v in base.items() if v is not None},
    )


async def test_partial_failure_reports_each_refused_user_and_stores_the_rest(
    clean_emulators: Emulators,
) -> None:
    users = [
        User(identifiers=Identifiers(uuid="ok-1", email="ok@example.com"), events=[purchase()]),
        User(identifiers=Identifiers(uuid="bad-phone", phone_number="12345"), events=[purchase()]),
        User(identifiers=Identifiers(uuid="no-group"), events=[purchase(event_group_id=None)]),
    ]
    async with InsiderClient(clean_emulators.insider_settings()) as insider:
        result = await insider.upsert_users(users)

    assert result.successful == 1
    failures = {f.index: f.reasons for f in result.failures}
    # Insider quotes the refused value: the client masks it (no raw phone in any report)
    assert failures[1] == [f"user has an invalid phone number: {pii_fingerprint('12345')}"]
    assert failures[2] == ["event_group_id parameter is required on purchase event"]
    stored = clean_emulators.insider_users()
    assert [u["identifiers"] for u in stored] == [{"uuid": "ok-1", "email": "ok@example.com"}]


async def test_client_splits_into_requests_of_at_most_1000_users(
    clean_emulators: Emulators,
) -> None:
    users = [
        User(identifiers=Identifiers(uuid=f"u-{n}"), events=[purchase()]) for n in range(2_500)
    ]
    async with InsiderClient(clean_emulators.insider_settings()) as insider:
        result = await insider.upsert_users(users, skip_hook=True)
    assert (result.requests, result.successful, result.failures) == (3, 2_500, [])
    assert len(clean_emulators.insider_users()) == 2_500


def test_emulator_refuses_oversized_requests(clean_emulators: Emulators) -> None:
    url = f"{clean_emulators.insider_url}/api/user/v1/upsert"
    too_many = {
        "users": [
            {"identifiers": {"uuid": str(n)}, "attributes": {"name": "x"}} for n in range(1_001)
        ]
    }
    response = httpx.post(url, json=too_many, headers=HEADERS)
    assert response.status_code == 400
    assert "at most 1000" in response.json()["error"]

    too_big = {"users": [{"identifiers": {"uuid": "1"}, "attributes": {"name": "x" * 5_000_001}}]}
    response = httpx.post(url, json=too_big, headers=HEADERS)
    assert response.status_code == 400
    assert "5,000,000 bytes" in response.json()["error"]

    response = httpx.post(url, json={"skip_hook": True}, headers=HEADERS)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "users must be defined: bad request"},
    )


def test_emulator_checks_partner_name_and_token(clean_emulators: Emulators) -> None:
    url = f"{clean_emulators.insider_url}/api/user/v1/upsert"
    body = {"users": [{"identifiers": {"uuid": "1"}, "attributes": {"name": "x"}}]}
    assert (
        httpx.post(url, json=body, headers={**HEADERS, "X-PARTNER-NAME": "TestPartner"}).status_code
        == 403
    )
    assert (
        httpx.post(url, json=body, headers={**HEADERS, "X-REQUEST-TOKEN": "wrong"}).status_code
        == 403
    )
    catalog = httpx.post(f"{clean_emulators.insider_url}/v2/ingest", json=[], headers=HEADERS)
    assert catalog.status_code == 401  # the UCD token is not the catalog token


async def test_client_raises_configuration_error_on_bad_token(clean_emulators: Emulators) -> None:
    settings = clean_emulators.insider_settings(api_key="wrong-token")
    async with InsiderClient(settings) as insider:
        with pytest.raises(InsiderConfigurationError) as caught:
            await insider.upsert_users(
                [User(identifiers=Identifiers(uuid="1"), events=[purchase()])]
            )
    assert caught.value.status_code == 403
    assert not caught.value.retryable


async def test_identifiers_of_two_profiles_in_one_upsert_merge_them(
    clean_emulators: Emulators,
) -> None:
    async with InsiderClient(clean_emulators.insider_settings()) as insider:
        await insider.upsert_users(
            [
                User(
                    identifiers=Identifiers(custom={"anonymous_id": "anon-7"}),
                    events=[purchase(event_group_id="cart-1")],
                )
            ]
        )
        await insider.upsert_users(
            [User(identifiers=Identifiers(uuid="cust-7"), events=[purchase()])]
        )
        assert len(clean_emulators.insider_users()) == 2
        await insider.upsert_users(
            [
                User(
                    identifiers=Identifiers(uuid="cust-7", custom={"anonymous_id": "anon-7"}),
                    events=[purchase(event_group_id="ORD-2")],
                )
            ]
        )
        profile = await insider.read_profile({"custom": {"anonymous_id": "anon-7"}})
    users = clean_emulators.insider_users()
    assert len(users) == 1
    assert users[0]["identifiers"] == {"uuid": "cust-7", "custom.anonymous_id": "anon-7"}
    assert sorted(e["event_params"]["event_group_id"] for e in users[0]["events"]) == [
        "ORD-1",
        "ORD-2",
        "cart-1",
    ]
    assert profile is not None
    assert profile["attributes"]["iid"] == users[0]["insider_id"]


async def test_profiles_with_different_uuids_sharing_a_phone_stay_apart(
    clean_emulators: Emulators,
) -> None:
    # Given two customers with their own uuids and one phone number between them
    async with InsiderClient(clean_emulators.insider_settings()) as insider:
        for uuid in ("cust-a", "cust-b"):
            await insider.upsert_users(
                [
                    User(
                        identifiers=Identifiers(uuid=uuid, phone_number="+15032000001"),
                        attributes=Attributes(name=uuid),
                    )
                ]
            )
    # Then each keeps its own profile (one value per identifier type: no merge)
    users = {u["identifiers"]["uuid"]: u for u in clean_emulators.insider_users()}
    assert set(users) == {"cust-a", "cust-b"}
    assert users["cust-a"]["identifiers"]["phone_number"] == "+15032000001"
    assert "phone_number" not in users["cust-b"]["identifiers"]
    assert users["cust-b"]["attributes"]["name"] == "cust-b"


async def test_rate_limit_answers_429_with_retry_after_and_client_backs_off(
    clean_emulators: Emulators,
) -> None:
    httpx.post(
        f"{clean_emulators.insider_url}/_emulator/limits", json={"upsert": 2}
    ).raise_for_status()
    url = f"{clean_emulators.insider_url}/api/user/v1/upsert"
    body = {"users": [{"identifiers": {"uuid": "1"}, "attributes": {"name": "x"}}]}
    statuses = [httpx.post(url, json=body, headers=HEADERS) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json() == {"error": "rejected: too many requests"}
    assert int(statuses[2].headers["Retry-After"]) >= 1

    # A client that gives up quickly surfaces a retryable error carrying the server's hint.
    fast = Backoff(attempts=2, base_seconds=0.01, max_seconds=0.01)
    async with InsiderClient(clean_emulators.insider_settings(), backoff=fast) as insider:
        with pytest.raises(InsiderRateLimited) as caught:
            await insider.upsert_users(
                [User(identifiers=Identifiers(uuid="2"), events=[purchase()])]
            )
    assert caught.value.retryable
    assert caught.value.retry_after is not None


async def test_injected_429s_and_errors_are_retried_without_loss(
    clean_emulators: Emulators,
) -> None:
    httpx.post(
        f"{clean_emulators.insider_url}/_emulator/faults",
        json={
            "rate_limited_rate": 0.3,
            "error_rate": 0.2,
            "retry_after_seconds": 0,
            "send_retry_after": False,
        },
    ).raise_for_status()
    backoff = Backoff(attempts=12, base_seconds=0.01, max_seconds=0.05)
    async with InsiderClient(clean_emulators.insider_settings(), backoff=backoff) as insider:
        for n in range(20):
            result = await insider.upsert_users(
                [User(identifiers=Identifiers(uuid=f"u{n}"), events=[purchase()])]
            )
            assert result.successful == 1
    stats = httpx.get(f"{clean_emulators.insider_url}/_emulator/stats").json()
    assert stats["users"] == 20
    assert stats["statuses"].get("upsert:429", 0) + stats["statuses"].get("upsert:500", 0) > 0


async def test_catalog_ingest_reports_invalid_records_per_field(clean_emulators: Emulators) -> None:
    item = {
        "item_id": "SKU-1",
        "locale": "en_US",
        "name": "Shoe",
        "url": "https://shop.example/p/1",
        "image_url": "https://img.example/1.jpg",
        "price": {"USD": 10.0},
        "original_price": {"USD": 12.0},
        "in_stock": 1,
    }
    async with InsiderClient(clean_emulators.insider_settings()) as insider:
        await insider.create_locales([CatalogLocale(language_and_country_code="en_US")])
        result = await insider.catalog_ingest(
            [
                item,
                {**item, "item_id": "SKU-2", "url": "not-a-url"},
                {**item, "item_id": "SKU-3", "locale": "fr_FR"},
            ]
        )
        update = await insider.catalog_update(
            [
                {
                    "item_id": "SKU-1",
                    "locale": "en_US",
                    "price": {"USD": 8.0},
                    "original_price": {"USD": 12.0},
                },
                {"item_id": "SKU-404", "locale": "en_US", "in_stock": 0},
            ]
        )
    assert (result.valid, result.invalid) == (1, 2)
    assert {(d.field, tuple(d.document_ids)) for d in result.details} == {
        ("url", ("SKU-2",)),
        ("locale", ("SKU-3",)),
    }
    assert (update.valid, update.invalid) == (1, 1)
    catalog = httpx.get(f"{clean_emulators.insider_url}/_emulator/catalog").json()
    assert [(i["item_id"], i["price"]) for i in catalog["items"]] == [("SKU-1", {"USD": 8.0})]


async def test_identifier_update_and_user_deletion(clean_emulators: Emulators) -> None:
    async with InsiderClient(clean_emulators.insider_settings()) as insider:
        await insider.upsert_users(
            [
                User(
                    identifiers=Identifiers(uuid="c-1", email="old@example.com"),
                    events=[purchase()],
                )
            ]
        )
        await insider.update_identifier({"email": "old@example.com"}, {"email": "new@example.com"})
        assert await insider.read_profile({"email": "old@example.com"}) is None
        moved = await insider.read_profile({"email": "new@example.com"}, attributes=["uuid"])
        assert moved is not None
        assert moved["attributes"]["uuid"] == "c-1"

        await insider.delete_user({"uuid": "c-1"})
        assert await insider.read_profile({"uuid": "c-1"}) is None
    assert clean_emulators.insider_users() == []


async def test_profile_reads_return_custom_params_unless_switched_to_default_params_only(
    clean_emulators: Emulators,
) -> None:
    view = Event(
        event_name="product_detail_page_view",
        timestamp="2026-11-26T10:00:00Z",
        event_params={"product_id": "SKU-1", "custom": {"event_id": "e-1", "channel": "web"}},
    )
    wanted = {
        "start_date": 0,
        "end_date": 2_000_000_000,
        "wanted": [{"event_name": view.event_name, "params": ["event_id", "product_id"]}],
    }
    everything = {**wanted, "wanted": [{"event_name": view.event_name}]}
    async with InsiderClient(clean_emulators.insider_settings()) as insider:
        # Given a stored event with custom params
        await insider.upsert_users([User(identifiers=Identifiers(uuid="c-1"), events=[view])])
        # When it is read with its params asked for by name, on a default account
        named = await insider.read_profile({"uuid": "c-1"}, events=wanted)
        # And on an account whose reads return default params only (by name, and all)
        clean_emulators.insider_reads(custom_event_params=False)
        default_named = await insider.read_profile({"uuid": "c-1"}, events=wanted)
        default_all = await insider.read_profile({"uuid": "c-1"}, events=everything)
    # Then the default account returns the custom param at the top level of the event
    assert named is not None
    assert default_named is not None
    assert default_all is not None
    at = "2026-11-26T10:00:00Z"
    assert named["events"][view.event_name] == [
        {"event_id": "e-1", "product_id": "SKU-1", "created_date": at}
    ]
    # And the other leaves every custom param out
    assert default_named["events"][view.event_name] == [{"product_id": "SKU-1", "created_date": at}]
    assert default_all["events"][view.event_name] == [{"product_id": "SKU-1", "created_date": at}]
    # And the switch refuses what it does not know, and a reset restores custom params
    answer = httpx.post(
        f"{clean_emulators.insider_url}/_emulator/reads", json={"custom_event_params": "no"}
    )
    assert answer.status_code == 400
    httpx.post(f"{clean_emulators.insider_url}/_emulator/reset").raise_for_status()
    async with InsiderClient(clean_emulators.insider_settings()) as insider:
        await insider.upsert_users([User(identifiers=Identifiers(uuid="c-1"), events=[view])])
        again = await insider.read_profile({"uuid": "c-1"}, events=wanted)
    assert again is not None
    assert again["events"][view.event_name][0]["event_id"] == "e-1"


async def test_held_upserts_are_stored_only_once_the_faults_change(
    clean_emulators: Emulators,
) -> None:
    emu = clean_emulators
    # Given an emulator that holds upserts after the first one
    emu.insider_faults(hold_after=1)
    users = [
        User(identifiers=Identifiers(uuid=f"held-{n}"), attributes=Attributes(name="Held"))
        for n in range(3)
    ]
    async with httpx.AsyncClient(base_url=emu.insider_url, headers=HEADERS, timeout=60) as http:

        async def upsert(user: User) -> httpx.Response:
            body = {"users": [user.model_dump(exclude_none=True)]}
            return await http.post("/api/user/v1/upsert", json=body)

        # When three upserts are sent one after another
        assert (await upsert(users[0])).status_code == 200
        held = [asyncio.create_task(upsert(user)) for user in users[1:]]
        # Then the first is stored, the others are received and held, not stored
        stats = await eventually(
            emu.insider_stats, until=lambda stats: stats["held"].get("upsert") == 2
        )
        assert stats["in_flight"] == {"upsert": 2}
        assert [u["identifiers"]["uuid"] for u in emu.insider_users()] == ["held-0"]
        assert not any(task.done() for task in held)
        # When the faults are set again, Then the held ones are stored and answered
        emu.insider_faults()
        assert [(await task).status_code for task in held] == [200, 200]
    assert sorted(u["identifiers"]["uuid"] for u in emu.insider_users()) == [
        "held-0",
        "held-1",
        "held-2",
    ]
    assert emu.insider_stats()["held"] == {}
