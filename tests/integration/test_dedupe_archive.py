"""The dedupe archive against the commercetools emulator over HTTP, and a journey shard using
it on the real worker: a redelivery older than the shard's memory is recognised without
reading Insider; a forgotten event the archive covers is delivered without reading it; one
it does not cover is settled by reading Insider, as before the archive."""

from __future__ import annotations

import time
from array import array
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.journeys.archive import (
    CONTAINER,
    ArchivedGeneration,
    ArchiveStore,
    ArchiveView,
    DedupeArchive,
    pack,
    resolve,
)
from ct_insider.journeys.memory import CLOCK_SKEW_ALLOWANCE
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal, digest
from ct_insider.retry import Backoff
from emulators.process import free_port
from tests.bridge_helpers import serving_bridge, storefront_event
from tests.conftest import Emulators, eventually, running_worker
from tests.integration.test_realtime_exactly_once import post_all, stored_event_ids
from workflows.journey_shard import JourneyShardWorkflow, ShardStats, shard_workflow_id

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest_asyncio.fixture
async def store(clean_emulators: Emulators) -> AsyncIterator[ArchiveStore]:
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        yield ArchiveStore(ct)


def generation(
    sequence: int, keys: list[int], lane: str = "lane1", expires_at: datetime = NOW
) -> ArchivedGeneration:
    return ArchivedGeneration(
        lane=lane,
        shard="shard-000",
        sequence=sequence,
        received_through=int(NOW.timestamp() * 1000) + 10_000,
        expires_at=int(expires_at.timestamp() * 1000),
        keys=pack(sorted(keys)),
    )


def signal(key: str, *, forgotten: bool = True, occurred_at: datetime = NOW) -> JourneySignal:
    return JourneySignal(
        dedupe_key=key,
        kind="storefront",
        type="product_view",
        occurred_at=occurred_at,
        identity=JourneyIdentity(anonymous_id="v-1"),
        forgotten=forgotten,
    )


async def test_an_archived_generation_is_written_once_read_back_and_deleted(
    store: ArchiveStore, clean_emulators: Emulators
) -> None:
    # Given a generation written twice (a retried write)
    written = generation(0, [3, 1, 2])
    await store.write(written)
    await store.write(written)
    # Then commercetools holds one object of it, and it reads back sorted
    found = clean_emulators.ct("GET", f"custom-objects/{CONTAINER}")["results"]
    assert [o["key"] for o in found] == [written.key]
    assert await store.read([written.key, "lane1-000000009"]) == {
        written.key: array("Q", [1, 2, 3])
    }
    # When it is deleted (twice: a retried delete)
    await store.delete([written.key])
    await store.delete([written.key])
    # Then it is gone
    assert await store.read([written.key]) == {}


async def test_a_sweep_deletes_expired_objects_of_any_lane_and_nothing_else(
    store: ArchiveStore,
) -> None:
    # Given objects of two lanes, two of them expired two hours ago, one expiring later
    expired = [
        generation(0, [1], lane="orphan", expires_at=NOW - timedelta(hours=2)),
        generation(5, [2], lane="lane1", expires_at=NOW - timedelta(hours=2)),
    ]
    live = generation(6, [3], lane="lane1", expires_at=NOW + timedelta(hours=1))
    archive = DedupeArchive(store)
    for written in [*expired, live]:
        await archive.write(written)
    # When the objects expired an hour ago are swept
    await archive.sweep(int((NOW - timedelta(hours=1)).timestamp() * 1000))
    # Then only those are gone, from commercetools and from the cache
    assert list(await store.read([g.key for g in [*expired, live]])) == [live.key]
    assert await archive.find([g.key for g in expired], {1, 2}) == set()


async def test_a_cold_cache_reads_each_object_once_and_a_warm_one_not_at_all(
    store: ArchiveStore,
) -> None:
    # Given 45 objects written by one worker process
    writer = DedupeArchive(store)
    for sequence in range(45):
        await writer.write(generation(sequence, [1000 * sequence + k for k in range(50)]))
    keys = [generation(s, []).key for s in range(45)]
    # Then that process finds their keys without reading commercetools
    assert await writer.find(keys, {0, 44_049, 77}) == {0, 44_049}
    assert writer.reads == 0
    # When another process (a cold cache, after a restart) looks keys up in all of them
    reader = DedupeArchive(store)
    assert await reader.find(keys, {5, 30_001, 99_999}) == {5, 30_001}
    # Then it read each object once, in groups; asked again it reads nothing more
    assert reader.reads == 45
    assert await reader.find(keys, {44_000}) == {44_000}
    assert reader.reads == 45


async def test_the_cache_stays_within_its_bound_and_still_answers(store: ArchiveStore) -> None:
    # Given a cache of 1,000 bytes and three objects of 100 keys (800 bytes each)
    for sequence in range(3):
        await store.write(generation(sequence, [100 * sequence + k for k in range(100)]))
    keys = [generation(s, []).key for s in range(3)]
    archive = DedupeArchive(store, max_bytes=1_000)
    # When keys held by each of them are looked up, twice
    for _ in range(2):
        assert await archive.find(keys, {5, 150, 299, 300}) == {5, 150, 299}
        # Then it never holds more than its bound
        assert archive.cached_bytes <= 1_000
    # And what did not fit was read again (3 objects, then the 2 evicted)
    assert archive.reads == 5


async def test_resolve_drops_archived_signals_trusts_covered_ones_and_doubts_the_rest(
    store: ArchiveStore,
) -> None:
    # Given an archive holding one signal's key, covering from an hour ago
    await store.write(generation(0, [digest("event:old")]))
    archive = DedupeArchive(store)
    covered_from = int((NOW - timedelta(hours=1)).timestamp() * 1000)
    view = ArchiveView(lane="lane1", sequences=[0], covered_from=covered_from)
    signals = [
        signal("event:fresh", forgotten=False),
        signal("event:old"),
        signal("event:new"),
        signal("event:ancient", occurred_at=NOW - timedelta(hours=1) + CLOCK_SKEW_ALLOWANCE / 2),
    ]
    # When a delivery resolves its forgotten signals
    duplicates = await resolve(archive, view, signals)
    # Then the archived one is a duplicate, the covered new one goes out as it is, the one
    # dated before what the archive covers goes in doubt (Insider is asked)
    assert duplicates == [1]
    assert [s.doubt for s in signals] == [False, False, False, True]
    # And without a view (no archive) every forgotten signal is in doubt
    again = [signal("event:old"), signal("event:new")]
    assert await resolve(archive, None, again) == []
    assert [s.doubt for s in again] == [True, True]


async def test_an_archive_commercetools_cannot_serve_puts_forgotten_signals_in_doubt(
    clean_emulators: Emulators,
) -> None:
    # Given an archive whose commercetools refuses connections, with one object cached
    unreachable = f"http://127.0.0.1:{free_port()}"
    settings = clean_emulators.ct_settings().model_copy(
        update={"api_url": unreachable, "auth_url": unreachable}
    )
    async with CommercetoolsClient(settings, backoff=Backoff(attempts=1)) as ct:
        archive = DedupeArchive(ArchiveStore(ct))
        archive.keep(generation(0, []).key, array("Q"))
        view = ArchiveView(lane="lane1", sequences=[0, 1], covered_from=0)
        signals = [signal("event:old"), signal("event:new")]
        # When a delivery resolves its forgotten signals (object 1 must be read)
        duplicates = await resolve(archive, view, signals)
    # Then the delivery goes on, and Insider is asked about each of them
    assert duplicates == []
    assert [s.doubt for s in signals] == [True, True]


async def shard_stats(client: Client, journeys: str) -> ShardStats:
    handle = client.get_workflow_handle_for(
        JourneyShardWorkflow.run, shard_workflow_id(journeys, 0)
    )
    return await handle.query(JourneyShardWorkflow.stats)


async def covers_from(client: Client, journeys: str) -> int | None:
    handle = client.get_workflow_handle_for(
        JourneyShardWorkflow.run, shard_workflow_id(journeys, 0)
    )
    return await handle.query(JourneyShardWorkflow.archive_covers_from)


async def archived_duplicates(client: Client, journeys: str, count: int) -> bool:
    return (await shard_stats(client, journeys)).archived_duplicates == count


def views(count: int, prefix: str, at: datetime, apart: float = 0) -> list[dict[str, Any]]:
    return [
        storefront_event(
            "product_view",
            {"anonymous_id": f"{prefix}-{n}"},
            at + timedelta(seconds=apart * n),
            sku=f"S-{n}",
        )
        for n in range(count)
    ]


async def test_a_shard_recognises_redeliveries_beyond_its_memory_without_reading_insider(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    journeys = f"{task_queue}-journeys"

    def profile_reads() -> int:
        return int(emu.insider_stats()["requests"].get("profile", 0))

    async with (
        running_worker(client, task_queue, emu),
        serving_bridge(client, journeys, emu, shards=1, seen_capacity=16) as bridge,
    ):
        # Given a shard remembering 16 keys, which took 24 events one at a time, each dated
        # when it was sent, the first as it started and the others once its archive covered
        # them (its memory reaches back less than the clock-skew allowance at this pace, so
        # they look forgotten; dated after the archive began, they are covered): the first
        # ones left its memory for the dedupe archive
        first = views(1, "a", datetime.now(UTC))
        await post_all(bridge, "/events", first)
        start = await eventually(lambda: covers_from(client, journeys), what="a shard started")
        covered_at = datetime.fromtimestamp(start / 1000, UTC) + CLOCK_SKEW_ALLOWANCE
        await eventually(lambda: time.time() >= covered_at.timestamp())
        for number in range(1, 24):
            [event] = views(1, f"a{number}", datetime.now(UTC))
            first.append(event)
            await post_all(bridge, "/events", [event])
        await eventually(lambda: len(stored_event_ids(emu)) == 24)
        await eventually(
            lambda: shard_stats(client, journeys),
            until=lambda stats: stats.archived_objects >= 2,
            what="two generations archived",
        )
        # When the first event is posted again (an at-least-once sender)
        await post_all(bridge, "/events", [first[0]])
        await eventually(lambda: archived_duplicates(client, journeys, 1))
        # Then it is dropped as a duplicate, found in the archive: Insider is not read
        assert stored_event_ids(emu)[first[0]["event_id"]] == 1
        assert profile_reads() == 0

        # Given events the archive covers: dated no earlier than a clock-skew allowance
        # after the archive began (a storefront clock running behind, or late redeliveries)
        await eventually(lambda: covers_from(client, journeys), what="no write pending")
        later = views(20, "b", covered_at)
        for event in later:
            await post_all(bridge, "/events", [event])
        await eventually(lambda: len(stored_event_ids(emu)) == 44)
        # When a new event dated as early as the ones the shard forgot arrives
        new = storefront_event("product_view", {"anonymous_id": "c-1"}, covered_at, sku="S-1")
        await post_all(bridge, "/events", [new])
        # Then it is delivered (not in the archive, which covers it) without reading Insider
        await eventually(lambda: stored_event_ids(emu)[new["event_id"]] == 1)
        assert profile_reads() == 0

        # When an event dated before what the archive covers arrives (two hours old)
        old = storefront_event(
            "product_view", {"anonymous_id": "d-1"}, NOW - timedelta(hours=2), sku="S-1"
        )
        await post_all(bridge, "/events", [old])
        # Then it is settled by reading Insider, and delivered once
        await eventually(lambda: stored_event_ids(emu)[old["event_id"]] == 1)
        assert profile_reads() == 1
        stats = await shard_stats(client, journeys)
    assert stats.archived_duplicates == 1
    assert stats.in_doubt == 1
    assert max(stored_event_ids(emu).values()) == 1
