"""Erasure of one person across every identity: `ct-insider erase` and the CustomerDeleted
path (real worker, dev server, bridge, both emulators; the Insider emulator is the judge)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import DeadLetterDraft, DeadLetterStore
from ct_insider.erasure.eraser import Eraser, ErasureReport
from ct_insider.erasure.plan import ErasureRequest
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import Event, Identifiers, User
from ct_insider.mapping import normalize
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.ledger import LEDGER_CONTAINER
from starters.backfill import start_backfill
from starters.cli import _parser
from starters.output import UsageError
from tests.bridge_helpers import Bridge, message, seconds_ago, serving_bridge, storefront_event
from tests.conftest import Emulators, eventually, running_worker
from tests.integration.test_dead_letters import printed_json
from workers.main import Workers
from workflows.backfill import BackfillInput

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Person:
    customer_id: str
    uuid: str  # per uuid_source
    email: str
    phone: str  # the customer's mobile, E.164
    order_phone: str  # only on a guest order's address
    first_session: str  # anonymous id merged at sign-in
    second_session: str  # anonymous id of a guest order, whose profile stayed apart
    order_ids: list[str]

    def values(self) -> list[str]:
        return [
            self.uuid,
            self.customer_id,
            self.email,
            self.phone,
            self.order_phone,
            self.first_session,
            self.second_session,
        ]


def holding(emu: Emulators, value: str) -> list[dict[str, Any]]:
    """Insider profiles holding `value` anywhere (identifier, attribute, event param)."""
    body = httpx.get(
        f"{emu.insider_url}/_emulator/users", params={"holding": value}, timeout=30
    ).json()
    return list(body["users"])


async def given_a_person(
    emu: Emulators, client: Client, worker: Workers, bridge: Bridge, *, uuid_source: str = "id"
) -> Person:
    """A registered customer (mobile on their address) with an anonymous history merged at
    sign-in, a second anonymous session that stayed a profile of its own, two guest orders
    with their email (one with that session and a phone) and an order of their own, all
    synced to Insider by a backfill and the bridge."""
    tag = uuid.uuid4().hex[:8]
    [(customer_id, email)] = emu.seeder().customers(1, prefix=f"erase-{tag}")
    [sku, *_] = emu.seeder().catalog(1)
    customer = emu.ct("GET", f"customers/{customer_id}")
    key = f"key-{tag}"
    customer = emu.ct(
        "POST",
        f"customers/{customer_id}",
        {"version": customer["version"], "actions": [{"action": "setKey", "key": key}]},
    )
    address = customer["addresses"][0]
    phone = normalize.phone_e164(address["mobile"], address["country"])
    assert phone is not None
    first, second = f"anon-{tag}-1", f"anon-{tag}-2"
    # the anonymous history, merged into the customer's profile at sign-in
    for event in (
        storefront_event("product_view", {"anonymous_id": first}, seconds_ago(60), sku=sku),
        storefront_event(
            "sign_in", {"customer_id": customer_id, "anonymous_id": first}, seconds_ago(55)
        ),
        storefront_event("product_view", {"anonymous_id": second}, seconds_ago(50), sku=sku),
    ):
        assert (await bridge.post("/events", event)).status_code == 202
    await eventually(lambda: holding(emu, second) and holding(emu, first))
    order_phone = "+4915799912345"
    orders = [
        emu.place_order(
            sku,
            customerEmail=email,
            anonymousId=second,
            shippingAddress={"country": "DE", "mobile": order_phone},
        ),
        emu.place_order(sku, customerEmail=email),
        emu.place_order(sku, customerId=customer_id, customerEmail=email),
    ]
    backfill = await start_backfill(client, worker.task_queue, BackfillInput(target="all"))
    await backfill.result()
    uuid_value = key if uuid_source == "key" else customer_id
    for value in (uuid_value, email, phone, first, second):
        assert holding(emu, value), value
    assert len(emu.insider_events("purchase")) == 3
    return Person(
        customer_id=customer_id,
        uuid=uuid_value,
        email=email,
        phone=phone,
        order_phone=order_phone,
        first_session=first,
        second_session=second,
        order_ids=[order["id"] for order in orders],
    )


async def letters_about(emu: Emulators, person: Person) -> tuple[DeadLetterStore, list[str]]:
    """Dead letters naming the person (a guest order, a journey signal with their email),
    and one about someone else; their keys."""
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        store = DeadLetterStore(ct)
        drafts = [
            DeadLetterDraft(
                entity="order", record_id=person.order_ids[0], reasons=["refused"], run="t"
            ),
            DeadLetterDraft(
                entity="storefront-event",
                record_id="evt-1",
                reasons=["refused"],
                run="t",
                redrive={"signal": {"identity": {"email": person.email.upper()}}},
            ),
            DeadLetterDraft(entity="customer", record_id="someone-else", reasons=["x"], run="t"),
        ]
        await store.put(drafts)
    return store, [draft.key for draft in drafts]


async def remaining_letters(emu: Emulators) -> list[str]:
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        return [letter.record_id for letter in await DeadLetterStore(ct).list()]


async def ledger_values(emu: Emulators, order_ids: list[str]) -> list[str]:
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        return [
            json.dumps(await ct.get_json(f"custom-objects/{LEDGER_CONTAINER}/{order_id}"))
            for order_id in order_ids
        ]


def nothing_left(emu: Emulators, person: Person) -> bool:
    return not any(holding(emu, value) for value in person.values())


async def test_erase_customer_leaves_nothing_of_them_in_insider_or_the_connector(
    client: Client,
    task_queue: str,
    clean_emulators: Emulators,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = clean_emulators
    async with (
        running_worker(client, task_queue, emu) as worker,
        serving_bridge(client, worker.journey_task_queue, emu) as bridge,
    ):
        # Given a customer with guest orders and anonymous history in Insider, and dead
        # letters about them
        person = await given_a_person(emu, client, worker, bridge)
        others_before = len(emu.insider_users()) - len(
            {u["insider_id"] for v in person.values() for u in holding(emu, v)}
        )
        await letters_about(emu, person)
        capsys.readouterr()

        emu.use_in_this_process(monkeypatch, client, task_queue)
        # (the customer still exists in commercetools: without --force the command refuses,
        # by id and by the customer's email, since the next sync would re-create them)
        for who in (["--customer", person.customer_id], ["--email", person.email.upper()]):
            refused = _parser().parse_args(["erase", *who, "--wait", "--json"])
            with pytest.raises(UsageError, match="delete the customer in commercetools first"):
                await refused.handler(refused)
        assert holding(emu, person.uuid)

        # When an operator runs `ct-insider erase --customer ID --force --wait --json`
        args = _parser().parse_args(
            ["erase", "--customer", person.customer_id, "--force", "--wait", "--json"]
        )
        status = await args.handler(args)
        out = capsys.readouterr().out

    # Then Insider holds nothing with their uuid, email, phones or anonymous ids
    assert status == 0, out
    assert nothing_left(emu, person)
    assert len(emu.insider_users()) == others_before
    # and the report lists the profiles by identifier kind, emails masked
    report = printed_json(out)
    document = json.dumps(report)
    assert report["workflow_id"] == f"erase-{person.customer_id}"
    kinds = [profile["kind"] for profile in report["profiles"]]
    assert kinds[0] == "uuid"
    assert "anonymous_id" in kinds  # the session that stayed apart
    assert report["orders"] == 3
    assert person.email not in document
    assert person.phone not in document
    # and the dead letters about them are gone, the other one stays
    assert await remaining_letters(emu) == ["someone-else"]
    # and the delivery ledger keeps order ids and event keys only
    for value in await ledger_values(emu, person.order_ids):
        assert "@" not in value
        assert person.phone not in value
        assert '"purchase:' in value


@pytest.mark.parametrize("uuid_source", ["id", "key"])
async def test_customer_deleted_erases_every_identity(
    client: Client, task_queue: str, clean_emulators: Emulators, uuid_source: str
) -> None:
    emu = clean_emulators
    mapping = MappingConfig.model_validate({"uuid_source": uuid_source})
    async with (
        running_worker(client, task_queue, emu, mapping) as worker,
        serving_bridge(client, worker.journey_task_queue, emu) as bridge,
    ):
        # Given a customer with guest orders and anonymous history in Insider
        person = await given_a_person(emu, client, worker, bridge, uuid_source=uuid_source)
        await letters_about(emu, person)

        # When the customer is deleted in commercetools and its message reaches the bridge
        customer = emu.ct("GET", f"customers/{person.customer_id}")
        emu.ct("DELETE", f"customers/{person.customer_id}?version={customer['version']}")
        deleted = message(
            "customer",
            person.customer_id,
            "CustomerDeleted",
            sequence=9,
            version=customer["version"] + 1,
        )
        deleted["resourceUserProvidedIdentifiers"] = {"key": customer["key"]}
        assert (await bridge.post("/webhooks/commercetools", deleted)).status_code == 202

        # Then an ErasureWorkflow (not the shard's delivery) erases every profile holding
        # their data, and the letters about them
        await eventually(lambda: nothing_left(emu, person), within=30)
        erasure = client.get_workflow_handle(
            f"erase-{person.customer_id}", result_type=ErasureReport
        )
        report = await erasure.result()
    assert report.customer_id == person.customer_id
    assert report.profiles[0].kind == "uuid"
    assert report.profiles[0].identifier == person.uuid
    assert not report.failed
    assert await remaining_letters(emu) == ["someone-else"]


async def test_a_guest_found_by_email_is_anonymized_per_customer_deletion(
    clean_emulators: Emulators,
) -> None:
    emu = clean_emulators
    # Given a guest (no customer record) whose two orders name their email and a session,
    # and Insider profiles for the email and for the session that stayed apart
    [sku, *_] = emu.seeder().catalog(1)
    email, session = f"guest-{uuid.uuid4().hex[:8]}@example.com", f"anon-{uuid.uuid4().hex[:8]}"
    emu.place_order(sku, customerEmail=email, anonymousId=session)
    emu.place_order(sku, customerEmail=email)
    view = Event(event_name="product_detail_page_view", timestamp="2026-11-26T10:00:00Z")
    mapping = MappingConfig(customer_deletion="anonymize")
    anonymous = {mapping.orders.anonymous_identifier: session}
    async with (
        CommercetoolsClient(emu.ct_settings()) as ct,
        InsiderClient(emu.insider_settings()) as insider,
    ):
        await insider.upsert_users(
            [
                User(identifiers=Identifiers(email=email), events=[view]),
                User(identifiers=Identifiers(custom=anonymous), events=[view]),
                User(identifiers=Identifiers(uuid="someone-else"), events=[view]),
            ]
        )
        assert holding(emu, email)
        assert holding(emu, session)

        # When the guest is erased by email, with `customer_deletion: anonymize`
        eraser = Eraser(ct, insider, DeadLetterStore(ct), mapping)
        report = await eraser.erase(ErasureRequest(email=email.upper()), "anonymize")
        again = await eraser.erase(ErasureRequest(email=email), "anonymize")

    # Then no profile holds the email or the session, their behaviour stays anonymous
    assert holding(emu, email) == []
    assert holding(emu, session) == []
    assert report.orders == 2
    assert sorted(p.kind for p in report.profiles) == ["anonymous_id", "email"]
    assert not report.failed
    users = emu.insider_users()
    assert len(users) == 3
    assert sum(u["event_count"] for u in users) == 3
    # and erasing again finds nothing more to do
    assert again.profiles == []
    assert not again.failed


async def test_erasure_leaves_other_peoples_profiles_alone(clean_emulators: Emulators) -> None:
    emu = clean_emulators
    # Given two registered customers in Insider; A sent a gift to B (B's phone and email on
    # the shipping address) and placed an order with B's email
    tag = uuid.uuid4().hex[:8]
    [(a_id, a_email), (b_id, b_email)] = emu.seeder().customers(2, prefix=f"c1-{tag}")
    [sku, *_] = emu.seeder().catalog(1)
    b_address = emu.ct("GET", f"customers/{b_id}")["addresses"][0]
    b_phone = normalize.phone_e164(b_address["mobile"], b_address["country"])
    assert b_phone is not None
    gift = {"country": b_address["country"], "mobile": b_address["mobile"], "email": b_email}
    emu.place_order(sku, customerId=a_id, customerEmail=a_email, shippingAddress=gift)
    emu.place_order(sku, customerId=a_id, customerEmail=b_email)
    view = Event(event_name="product_detail_page_view", timestamp="2026-11-26T10:00:00Z")
    async with (
        CommercetoolsClient(emu.ct_settings()) as ct,
        InsiderClient(emu.insider_settings()) as insider,
    ):
        await insider.upsert_users(
            [
                User(identifiers=Identifiers(uuid=a_id, email=a_email), events=[view]),
                User(
                    identifiers=Identifiers(uuid=b_id, email=b_email, phone_number=b_phone),
                    events=[view],
                ),
            ]
        )
        [b_profile] = holding(emu, b_id)

        # When A is erased
        eraser = Eraser(ct, insider, DeadLetterStore(ct), MappingConfig())
        report = await eraser.erase(ErasureRequest(customer_id=a_id), "delete")

    # Then A's profile is gone and B's survives untouched
    assert holding(emu, a_id) == []
    assert holding(emu, a_email) == []
    assert [p["insider_id"] for p in holding(emu, b_id)] == [b_profile["insider_id"]]
    assert holding(emu, b_phone)
    assert holding(emu, b_email)
    # and the profile B's email found is reported as someone else's, left alone
    assert [p.kind for p in report.profiles] == ["uuid"]
    assert len(report.skipped) == 1
    assert b_id in report.skipped[0]
    assert b_email not in report.skipped[0]
    assert not report.failed
