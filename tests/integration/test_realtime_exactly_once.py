"""Realtime exactly-once under crashes, faults and poison records, judged by the Insider
emulator: the bridge in-process, the worker a real `ct-insider worker` process where it
must die."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import DeadLetterStore
from emulators.insider.events import held_event_keys
from emulators.process import ManagedProcess
from starters.dlq import redrive
from tests.bridge_helpers import (
    Bridge,
    message,
    seconds_ago,
    serving_bridge,
    settled_shards,
    storefront_event,
)
from tests.conftest import Emulators, eventually, running_worker, worker_process
from workflows.journey_shard import JourneyShardWorkflow, ShardStats, shard_workflow_id

pytestmark = pytest.mark.integration


def stored_event_ids(emu: Emulators) -> Counter[str]:
    """How often Insider holds each storefront event (by its id) and each purchase (by
    order number and SKU)."""
    return held_event_keys(emu.insider_events())


async def shard_stats(client: Client, journey_task_queue: str, shards: int) -> list[ShardStats]:
    return [
        await client.get_workflow_handle_for(
            JourneyShardWorkflow.run, shard_workflow_id(journey_task_queue, n)
        ).query(JourneyShardWorkflow.stats)
        for n in range(shards)
    ]


def views(visitors: range, prefix: str, ago: float = 30) -> list[dict[str, Any]]:
    return [
        storefront_event(
            "product_view", {"anonymous_id": f"{prefix}-{n}"}, seconds_ago(ago), sku=f"S-{n}"
        )
        for n in visitors
    ]


def shard_worker(
    emu: Emulators, client: Client, task_queue: str, folder: Path, name: str, shards: int
) -> ManagedProcess:
    return worker_process(
        emu, client, task_queue, folder, name, TEMPORAL_JOURNEY_SHARDS=str(shards)
    )


@contextmanager
def insider_latency(emu: Emulators, milliseconds: float) -> Iterator[None]:
    emu.insider_faults(latency_ms=milliseconds)
    try:
        yield
    finally:
        emu.insider_faults()


@contextmanager
def insider_holding_upserts(emu: Emulators, **faults: object) -> Iterator[None]:
    """Insider receives every upsert whole and holds it until the block ends, then stores it
    (`faults` apply meanwhile and after): a worker killed meanwhile dies with its upsert
    surely in Insider's hands, however loaded the machine (a latency only made it likely)."""
    emu.insider_faults(**faults, hold_after=0)
    try:
        yield
    finally:
        emu.insider_faults(**faults)


def held_upserts(emu: Emulators) -> int:
    return int(emu.insider_stats()["held"].get("upsert", 0))


async def kill_during_an_upsert(emu: Emulators, worker: ManagedProcess) -> None:
    """SIGKILL the worker process while Insider holds one of its upserts (in a block of
    insider_holding_upserts): the upsert is stored after the worker died."""
    await eventually(lambda: held_upserts(emu), what="an upsert held, to cut short")
    assert worker.process is not None
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(10)


async def post_all(bridge: Bridge, path: str, bodies: list[Any]) -> None:
    answers = await asyncio.gather(*(bridge.post(path, body) for body in bodies))
    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]


async def test_a_delivery_cut_short_by_a_dying_worker_is_settled_and_only_the_missing_resent(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    emu = clean_emulators
    journeys = f"{task_queue}-journeys"
    first = shard_worker(emu, client, task_queue, tmp_path, "worker-1", shards=1).start()
    try:
        async with serving_bridge(client, journeys, emu, shards=1) as bridge:
            # Given one shard that delivered a first batch
            batch_1 = views(range(0, 5), "a")
            await bridge.post("/events", {"events": batch_1})
            await eventually(lambda: len(stored_event_ids(emu)) == 5)
            # When the next batch is in Insider's hands (held there), a third waits behind
            # it, and the worker dies during that upsert (Insider stores batch 2 after it died)
            with insider_holding_upserts(emu):
                batch_2 = views(range(5, 10), "b")
                await bridge.post("/events", {"events": batch_2})
                await eventually(lambda: held_upserts(emu), what="batch 2 held by Insider")
                batch_3 = views(range(10, 15), "c")
                await bridge.post("/events", {"events": batch_3})
                await kill_during_an_upsert(emu, first)
            await eventually(lambda: len(stored_event_ids(emu)) == 10, 30)
            # And a new worker takes over (after the dead one's task times out)
            with shard_worker(emu, client, task_queue, tmp_path, "worker-2", shards=1):
                await eventually(lambda: len(stored_event_ids(emu)) == 15, 60)
                [stats] = (
                    await settled_shards(client, journeys, 1, received=15, distinct=True)
                ).values()
    finally:
        first.stop()
    # Then every event is in Insider once
    stored = stored_event_ids(emu)
    assert set(stored.values()) == {1}
    assert set(stored) == {e["event_id"] for e in batch_1 + batch_2 + batch_3}
    # And the rebuilt shard found its last delivery cut short, read Insider for that batch
    # only, found batch 2 there and sent batch 3
    assert stats.cut_short == 1
    assert stats.found_in_insider == 5
    assert stats.resent == 5
    assert stats.profile_reads == 10  # one per person in doubt, none for batch 1
    assert emu.insider_stats()["requests"]["profile"] == 10


async def stats_when(
    client: Client, journey_task_queue: str, condition: Callable[[ShardStats], bool], within: float
) -> ShardStats:
    """The single shard's statistics, once they meet `condition`."""

    async def single_shard() -> ShardStats:
        [stats] = await shard_stats(client, journey_task_queue, 1)
        return stats

    stats: ShardStats = await eventually(
        single_shard, within, until=condition, what="the shard's statistics"
    )
    return stats


async def test_a_delivery_cut_short_and_then_failing_before_sending_is_still_settled(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    emu = clean_emulators
    journeys = f"{task_queue}-journeys"
    customer_id, email, sku = emu.shopper()
    order = emu.place_order(sku, customerId=customer_id, customerEmail=email)
    purchase = f"{order.get('orderNumber') or order['id']}/{sku}"
    first = shard_worker(emu, client, task_queue, tmp_path, "worker-1", shards=1).start()
    try:
        async with serving_bridge(client, journeys, emu, shards=1) as bridge:
            # Given one shard that delivered a first batch
            batch_1 = views(range(5), "a")
            await bridge.post("/events", {"events": batch_1})
            await eventually(lambda: len(stored_event_ids(emu)) == 5)
            # When the worker dies while Insider takes an order's purchase (stored after)
            with insider_holding_upserts(emu):
                created = message("order", order["id"], "OrderCreated", order=order)
                await post_all(bridge, "/webhooks/commercetools", [created])
                await kill_during_an_upsert(emu, first)
            await eventually(lambda: purchase in stored_event_ids(emu), 30)
            # And commercetools is down when a new worker rebuilds the shard (after the
            # dead one's task timed out), for every attempt of its first delivery
            emu.ct_faults(unavailable=True)
            try:
                with shard_worker(emu, client, task_queue, tmp_path, "worker-2", shards=1):
                    await stats_when(client, journeys, lambda s: s.failed_deliveries > 0, 60)
                    emu.ct_faults()
                    # And more events follow once it is back
                    batch_3 = views(range(5, 10), "c")
                    await bridge.post("/events", {"events": batch_3})
                    stats = await stats_when(
                        client, journeys, lambda s: s.delivered == 11 and s.found_in_insider > 0, 60
                    )
            finally:
                emu.ct_faults()
    finally:
        first.stop()
    assert emu.ct_stats()["unavailable"] > 0, "commercetools was never down"
    # Then the purchase the dead worker sent is found in Insider, not sent again; the rest
    # is delivered once, without reading Insider for it
    stored = stored_event_ids(emu)
    assert set(stored.values()) == {1}
    assert set(stored) == {e["event_id"] for e in batch_1 + batch_3} | {purchase}
    assert stats.cut_short == 1
    assert stats.found_in_insider == 1
    assert stats.profile_reads == 1


async def test_a_worker_restarted_cleanly_reads_nothing_from_insider(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    emu = clean_emulators
    journeys = f"{task_queue}-journeys"
    async with serving_bridge(client, journeys, emu, shards=2) as bridge:
        # Given shards that delivered, on a worker that is then stopped (SIGTERM)
        with shard_worker(emu, client, task_queue, tmp_path, "worker-1", shards=2):
            await post_all(bridge, "/events", views(range(20), "v"))
            await eventually(lambda: len(stored_event_ids(emu)) == 20)
        # When a new worker rebuilds the shards from history and more events arrive
        with shard_worker(emu, client, task_queue, tmp_path, "worker-2", shards=2):
            await post_all(bridge, "/events", views(range(20, 40), "v"))
            await eventually(lambda: len(stored_event_ids(emu)) == 40)
            stats = await shard_stats(client, journeys, 2)
    # Then they asked Temporal whether a delivery was cut short, not Insider
    assert sum(s.rebuild_checks for s in stats) >= 1
    assert sum(s.cut_short for s in stats) == 0
    assert emu.insider_stats()["requests"].get("profile", 0) == 0
    assert set(stored_event_ids(emu).values()) == {1}


async def test_a_worker_killed_while_events_and_orders_flow_loses_and_repeats_nothing(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    emu = clean_emulators
    journeys = f"{task_queue}-journeys"
    seeder = emu.seeder()
    customers = seeder.customers(20)
    skus = seeder.catalog(5)
    orders = [
        emu.place_order(skus[n % len(skus)], customerId=c, customerEmail=e)
        for n, (c, e) in enumerate(customers)
    ]
    events = views(range(300), "flow", ago=60)
    created = [
        message("order", o["id"], "OrderCreated", order=o, at=seconds_ago(45)) for o in orders
    ]
    first = shard_worker(emu, client, task_queue, tmp_path, "worker-1", shards=4).start()
    try:
        async with serving_bridge(client, journeys, emu, shards=4) as bridge:
            with insider_latency(emu, 2_000):
                # Given events and order messages flowing (30 requests a second)
                async def flow() -> None:
                    for start in range(0, 300, 10):
                        await bridge.post("/events", {"events": events[start : start + 10]})
                        if start // 10 < len(created):
                            await bridge.post("/webhooks/commercetools", created[start // 10])
                        await asyncio.sleep(0.033)

                sender = asyncio.create_task(flow())
                # When the worker is killed mid-upsert, with traffic still coming
                await eventually(lambda: len(stored_event_ids(emu)) >= 60, 30)
                with insider_holding_upserts(emu, latency_ms=2_000):
                    await kill_during_an_upsert(emu, first)
                    at_kill = sum(stored_event_ids(emu).values())
                await sender
            # And a new worker starts
            with shard_worker(emu, client, task_queue, tmp_path, "worker-2", shards=4):
                expected = 300 + len(orders)
                await eventually(lambda: len(stored_event_ids(emu)) == expected, 90)
                received = len(events) + len(created)
                stats = list(
                    (await settled_shards(client, journeys, 4, received, distinct=True)).values()
                )
    finally:
        first.stop()
    # Then every storefront event and every purchase is in Insider exactly once
    stored = stored_event_ids(emu)
    assert at_kill < 300, "killed too late: everything was already delivered"
    assert set(stored.values()) == {1}
    purchases = {
        f"{o.get('orderNumber') or o['id']}/{o['lineItems'][0]['variant']['sku']}" for o in orders
    }
    assert purchases <= set(stored)
    assert sum(s.cut_short for s in stats) >= 1


@asynccontextmanager
async def realtime(
    client: Client, task_queue: str, emu: Emulators, shards: int = 4
) -> AsyncIterator[tuple[Bridge, str]]:
    async with (
        running_worker(client, task_queue, emu) as workers,
        serving_bridge(client, workers.journey_task_queue, emu, shards=shards) as bridge,
    ):
        yield bridge, workers.journey_task_queue


async def test_insider_failing_and_losing_answers_costs_reads_only_for_doubtful_batches(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    seeder = emu.seeder()
    customers = seeder.customers(10)
    skus = seeder.catalog(3)
    orders = [emu.place_order(skus[0], customerId=c, customerEmail=e) for c, e in customers]
    events = views(range(200), "f")
    # Given an Insider that answers 30% of requests 5xx and loses 10% of its answers
    emu.insider_faults(error_rate=0.3, lost_answer_rate=0.1)
    async with realtime(client, task_queue, emu) as (bridge, journeys):
        # When events and orders arrive
        for start in range(0, 200, 20):
            await bridge.post("/events", {"events": events[start : start + 20]})
        await post_all(
            bridge,
            "/webhooks/commercetools",
            [message("order", o["id"], "OrderCreated", order=o) for o in orders],
        )
        # Then each arrives exactly once
        await eventually(lambda: len(stored_event_ids(emu)) == 200 + len(orders), 120)
        emu.insider_faults()
        received = len(events) + len(orders)
        stats = list((await settled_shards(client, journeys, 4, received, distinct=True)).values())
    assert set(stored_event_ids(emu).values()) == {1}
    statuses = emu.insider_stats()["statuses"]
    assert statuses.get("upsert:500", 0) > 0, "no fault was injected"
    # And Insider was read only to settle users in doubt: one successful read per user
    # per settlement round, no read on the steady path
    reads = sum(s.profile_reads for s in stats)
    assert 0 < reads <= 4 * sum(s.in_doubt for s in stats)
    assert statuses.get("profile:200", 0) + statuses.get("profile:404", 0) == reads


async def test_a_poison_event_is_dead_lettered_and_a_redrive_after_the_fix_delivers_it_once(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    # Given InOne does not define the custom event `login` yet
    emu.insider_faults(undefined_events=["login"])
    visitor = {"anonymous_id": "p-1"}
    good = views(range(10), "g")
    viewed = storefront_event("product_view", visitor, seconds_ago(20), sku="S-9")
    sign_in = storefront_event("sign_in", visitor, seconds_ago(10))
    async with realtime(client, task_queue, emu, shards=2) as (bridge, journeys):
        # When a sign-in arrives among good events (in one request)
        await bridge.post("/events", {"events": [*good, viewed, sign_in]})
        # Then the good ones arrive, the visitor's product view included
        await eventually(lambda: len(stored_event_ids(emu)) == 11, 30)
        async with CommercetoolsClient(emu.ct_settings()) as ct:
            store = DeadLetterStore(ct)
            # And the sign-in is listed with Insider's reason
            [letter] = await eventually(store.list, what="the sign-in dead-lettered")
            assert letter.entity == "storefront-event"
            assert letter.record_id == sign_in["event_id"]
            assert any("login is not defined" in reason for reason in letter.reasons)
            # When the event is defined in InOne and the letter re-driven
            emu.insider_faults()
            report = await redrive(store, client, journeys, 2, every=True)
            assert report.redriven == [letter.key]
            # Then it is delivered once, and the letter leaves the store
            await eventually(lambda: len(stored_event_ids(emu)) == 12, 30)
            await eventually(store.list, until=lambda letters: letters == [], what="no letter")
    stored = stored_event_ids(emu)
    assert stored[sign_in["event_id"]] == 1
    assert set(stored.values()) == {1}
