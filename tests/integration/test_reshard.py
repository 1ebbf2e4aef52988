"""Resharding while events flow, end to end: the real workers, the bridge in-process, the
Insider emulator as the judge. Two shards become four (`reshard`, as `ct-insider reshard`
schedules it) while a storefront keeps posting; senders' retries of events delivered
before the move arrive after it."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client

from bridge.layout import LayoutReader, read_layout
from ct_insider.journeys.layout import layout_workflow_id
from starters.output import UsageError
from starters.reshard import reshard, running
from tests.bridge_helpers import Bridge, serving_bridge, storefront_event
from tests.conftest import Emulators, eventually, running_worker
from tests.integration.test_realtime_exactly_once import stored_event_ids
from workflows.journey_layout import ReshardRequest
from workflows.journey_shard import JourneyShardWorkflow, ShardInput, ShardStats, shard_workflow_id

pytestmark = pytest.mark.integration

VISITORS = 40
PER_REQUEST = 10


class Storefront:
    """Posts batches of product views of a few visitors, each visitor's in time order."""

    def __init__(self) -> None:
        self.start = datetime.now(UTC) - timedelta(minutes=5)
        self.sent: list[list[dict[str, Any]]] = []
        self.order: dict[str, list[str]] = defaultdict(list)  # visitor -> event ids

    def batch(self) -> list[dict[str, Any]]:
        events = []
        for n in range(PER_REQUEST):
            number = len(self.sent) * PER_REQUEST + n
            visitor = f"r-{number % VISITORS}"
            at = self.start + timedelta(milliseconds=10 * number)
            event = storefront_event("product_view", {"anonymous_id": visitor}, at, sku="S-1")
            self.order[visitor].append(event["event_id"])
            events.append(event)
        self.sent.append(events)
        return events

    async def post(self, bridge: Bridge, events: list[dict[str, Any]]) -> None:
        answer = await bridge.post("/events", {"events": events})
        assert answer.status_code == 202, answer.text


async def test_two_shards_become_four_while_events_flow_nothing_lost_or_duplicated(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    shop = Storefront()
    async with running_worker(client, task_queue, emu) as workers:
        journeys = workers.journey_task_queue
        # Bridges that re-read the layout often enough for a short lead
        layout = LayoutReader(client, journeys, 2, refresh_seconds=0.2, stale_seconds=0.6)
        async with serving_bridge(client, journeys, emu, shards=2, layout=layout) as bridge:
            # Given events flowing to two shards
            for _ in range(10):
                await shop.post(bridge, shop.batch())
            # When a reshard to four is scheduled, and events keep flowing until it is
            # complete (every old shard handed off), and a while after
            request = ReshardRequest(shards=4, lead_seconds=1.5, grace_seconds=2.0)
            await reshard(client, journeys, 2, request)
            for _ in range(2_000):
                if (await read_layout(client, journeys, 2)).current.epoch == 1:
                    break
                await shop.post(bridge, shop.batch())
            else:
                raise AssertionError("the reshard did not complete within 2,000 requests")
            for _ in range(10):
                await shop.post(bridge, shop.batch())
            # ... and senders retry the first requests (delivered before the move)
            for events in shop.sent[:5]:
                await shop.post(bridge, events)
            bridge_stats = await bridge.stats()
        expected = sum(len(events) for events in shop.sent)
        # Then every event arrives exactly once
        await eventually(lambda: len(stored_event_ids(emu)) == expected, 60)
        stats = await settled(client, journeys, expected)
    stored = stored_event_ids(emu)
    assert len(stored) == expected
    assert set(stored.values()) == {1}
    # And the redelivered requests were recognised, wherever their identities went
    assert sum(s.duplicates for s in stats) == 5 * PER_REQUEST
    # And the move really happened while events flowed: the bridge routes by four shards,
    # the new shards held events until their handoffs and then delivered them
    assert (bridge_stats["layout_epoch"], bridge_stats["journey_shards"]) == (1, 4)
    assert sum(s.held for s in stats) > 0
    assert [s.handoff_parts_received for s in stats] == [0, 0, 1, 1]
    assert all(s.delivered > 0 for s in stats)
    # And each visitor's events arrived in the order they happened
    arrived: dict[str, int] = {}
    for position, event in enumerate(emu.insider_events()):
        arrived[str((event.get("event_params") or {}).get("custom", {}).get("event_id"))] = position
    for visitor, event_ids in shop.order.items():
        positions = [arrived[event_id] for event_id in event_ids]
        assert positions == sorted(positions), f"{visitor}'s events out of order"


async def settled(client: Client, journeys: str, expected: int) -> list[ShardStats]:
    """The shards' statistics once every event went through a delivery and nothing is
    pending (a duplicate would have been delivered by then)."""
    handles = [
        client.get_workflow_handle_for(JourneyShardWorkflow.run, shard_workflow_id(journeys, n))
        for n in range(4)
    ]

    async def observe() -> tuple[list[ShardStats], list[int]]:
        stats = [await handle.query(JourneyShardWorkflow.stats) for handle in handles]
        return stats, [await handle.query(JourneyShardWorkflow.pending) for handle in handles]

    stats, _ = await eventually(
        observe,
        60,
        until=lambda seen: sum(s.delivered for s in seen[0]) >= expected and not any(seen[1]),
        what=f"the four shards to deliver {expected} events, nothing pending",
    )
    return list(stats)


@pytest.mark.parametrize(("started", "configured", "says"), [(4, 2, "more"), (1, 2, "fewer")])
async def test_a_first_reshard_from_a_count_the_bridges_do_not_use_is_refused(
    client: Client, task_queue: str, started: int, configured: int, says: str
) -> None:
    # Given `started` journey shards running, as bridges routing by that many start them (no
    # worker needed: they only have to exist), and no layout workflow yet
    journeys = f"{task_queue}-journeys"
    for shard in range(started):
        await client.start_workflow(
            JourneyShardWorkflow.run,
            ShardInput(shard=shard),
            id=shard_workflow_id(journeys, shard),
            task_queue=journeys,
        )
    try:
        # When a reshard is asked by a process configured with another count
        request = ReshardRequest(shards=8, lead_seconds=10, grace_seconds=0.5)
        with pytest.raises(UsageError, match=f"route by {says}"):
            await reshard(client, journeys, configured, request)
        # Then no layout was created for the bridges to follow
        assert not await running(client, layout_workflow_id(journeys))
    finally:
        for shard in range(started):
            await client.get_workflow_handle(shard_workflow_id(journeys, shard)).terminate()
