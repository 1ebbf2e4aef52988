"""Settling a delivery whose answer was lost, on accounts whose profile reads return custom
event params and on accounts whose reads return the default params only (the emulator's
`/_emulator/reads` switch), per the workers' settle matching. Judged by what the Insider
emulator stores: the bridge and the worker in-process, against the Temporal dev server."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from temporalio.client import Client

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.insider.client import InsiderClient
from ct_insider.setup.matching import MatchingStore, check_matching
from tests.bridge_helpers import message, seconds_ago, serving_bridge, storefront_event
from tests.conftest import Emulators, eventually, running_worker
from workflows.journey_shard import JourneyShardWorkflow, ShardStats, shard_workflow_id

pytestmark = pytest.mark.integration

# Insider events the signals below make: 2 identical views, 2 cart lines, 5 views, a login
# and a sign-up.
EVENTS = 11
USERS = 8  # the identities: one profile read each


def stored_copies(emu: Emulators) -> Counter[tuple[str, str, str | None]]:
    """How often Insider holds each event: by name, our event id and product (storage keeps
    every param, whatever reads return)."""
    copies: Counter[tuple[str, str, str | None]] = Counter()
    for event in emu.insider_events():
        params = event.get("event_params") or {}
        event_id = str((params.get("custom") or {}).get("event_id"))
        copies[(event["event_name"], event_id, params.get("product_id"))] += 1
    return copies


def signals(emu: Emulators) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Storefront events and a sign-up, all in one second; two of them identical but for
    their ids (same visitor, product and second)."""
    [(customer_id, _email)] = emu.seeder().customers(1)
    customer = emu.ct("GET", f"customers/{customer_id}")
    at = seconds_ago(30)
    twice = {"anonymous_id": "twice"}
    events = [
        storefront_event("product_view", twice, at, sku="S-1"),
        storefront_event("product_view", twice, at, sku="S-1"),
        storefront_event(
            "cart_view",
            {"anonymous_id": "cart"},
            at,
            cart_id="cart-1",
            currency="EUR",
            products=[
                {"sku": "S-1", "quantity": 1, "price": "10.00"},
                {"sku": "S-2", "quantity": 2, "price": "5.00"},
            ],
        ),
        *(
            storefront_event("product_view", {"anonymous_id": f"v-{n}"}, at, sku=f"S-{n}")
            for n in range(5)
        ),
        storefront_event("sign_in", {"customer_id": customer_id}, at),
    ]
    created = message("customer", customer_id, "CustomerCreated", customer=customer, at=at)
    return events, created


async def settled(client: Client, journeys: str) -> ShardStats:
    """The shard's stats once its settlement has accounted for every event."""
    handle = client.get_workflow_handle_for(
        JourneyShardWorkflow.run, shard_workflow_id(journeys, 0)
    )
    stats: ShardStats = await eventually(
        lambda: handle.query(JourneyShardWorkflow.stats),
        60,
        until=lambda stats: stats.found_in_insider + stats.resent >= EVENTS,
        what="the shard settled",
    )
    return stats


async def store_the_probe(emu: Emulators) -> None:
    """What `ct-insider setup insider` does for the workers: probe, store the answer."""
    settings = emu.insider_settings()
    async with (
        InsiderClient(settings) as insider,
        CommercetoolsClient(emu.ct_settings()) as ct,
    ):
        check = await check_matching(insider, settings, MatchingStore(ct), save=True)
    assert check.probed.matching == "fingerprint"


@pytest.mark.parametrize(
    ("custom_params_in_reads", "matching", "copies"),
    [
        # The defect: reads without custom params, matched by event_id - every settled
        # event is sent again.
        pytest.param(False, "event_id", 2, id="default-params-reads-by-event-id"),
        pytest.param(False, "fingerprint", 1, id="default-params-reads-by-fingerprint"),
        pytest.param(False, "auto", 1, id="default-params-reads-auto-after-setup"),
        pytest.param(True, "event_id", 1, id="custom-params-reads-by-event-id"),
    ],
)
async def test_a_lost_answer_is_settled_per_the_accounts_matching(
    client: Client,
    task_queue: str,
    clean_emulators: Emulators,
    custom_params_in_reads: bool,
    matching: str,
    copies: int,
) -> None:
    emu = clean_emulators
    journeys = f"{task_queue}-journeys"
    events, created = signals(emu)
    # Given an account whose profile reads do (or do not) return custom event params
    emu.insider_reads(custom_event_params=custom_params_in_reads)
    if matching == "auto":
        await store_the_probe(emu)
    # And an Insider that stores the next upsert but loses its answer
    emu.insider_faults(lost_answers_next=1)
    async with serving_bridge(client, journeys, emu, shards=1) as bridge:
        # And the signals stored before any worker runs, so the shard takes them in one
        # batch: one upsert, every person in it in doubt
        assert (await bridge.post("/events", {"events": events})).status_code == 202
        assert (await bridge.post("/webhooks/commercetools", created)).status_code == 202
        # When a worker with that matching delivers and settles them
        async with running_worker(client, task_queue, emu, settle_matching=matching):
            stats = await settled(client, journeys)
    # Then the answer was lost once, and each person was read once
    assert emu.insider_stats()["statuses"].get("upsert:500") == 1
    assert stats.in_doubt == USERS
    assert stats.profile_reads == USERS
    # And every event is in Insider - once, or twice where the matching cannot see its id
    stored = stored_copies(emu)
    assert len(stored) == EVENTS
    assert set(stored.values()) == {copies}
    assert {name for name, _, _ in stored} >= {"sign_up_confirmation", "login", "cart_page_view"}
    if copies == 1:
        assert (stats.found_in_insider, stats.resent) == (EVENTS, 0)
    else:
        assert (stats.found_in_insider, stats.resent) == (0, EVENTS)


@pytest.mark.parametrize("value", [{"matching": "by-magic"}, "not an object", None])
async def test_a_stored_answer_this_version_cannot_read_falls_back_to_the_default(
    clean_emulators: Emulators, value: Any
) -> None:
    # Given a stored answer edited by hand (or written by a newer `setup`)
    clean_emulators.ct(
        "POST",
        "custom-objects",
        {"container": "ct-insider-settle-matching", "key": "demo", "value": value},
    )
    # When a worker reads it
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        stored = await MatchingStore(ct).get("demo")
    # Then there is none to go by (the default applies) rather than a failure every settlement
    assert stored is None
