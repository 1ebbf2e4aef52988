"""Resharding, on JourneyShardWorkflow with mocked activities, on the real dev server.

Two shards become four: an identity owned by shard 1 of 2 is owned by shard 3 of 4. The
new owner holds its signals until the old owner handed off its memory; the merged memory
then drops a redelivery the old owner had delivered, deletions stay honoured, order is
kept, and a signal reaching the old owner after its handoff is forwarded. The last test
drives the same through JourneyLayoutWorkflow (`reshard`), as `ct-insider reshard` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from activities.journey import DeliverInput, DeliverResult, FinishInput, SettleInput
from activities.layout import announce, announce_layout
from bridge.layout import read_layout
from ct_insider.journeys.delivery import DeliveryOutcome, DeliveryStats
from ct_insider.journeys.layout import LayoutChange, layout_workflow_id
from ct_insider.journeys.settle import SettleProgress
from ct_insider.journeys.signals import shard_of
from starters.output import UsageError
from starters.reshard import reshard
from tests.conftest import eventually
from tests.integration.test_journey_shard_workflow import keep_history, send, view
from workers.main import journey_activation_pool, journey_worker
from workflows.journey_layout import JourneyLayoutWorkflow, ReshardRequest
from workflows.journey_shard import (
    JourneyShardWorkflow,
    ShardInput,
    ShardSettings,
    ShardStats,
    shard_workflow_id,
)

pytestmark = pytest.mark.integration

Shard = WorkflowHandle[JourneyShardWorkflow, ShardStats]


def visitor(old: int, new: int) -> str:
    """A visitor owned by shard `old` of 2 and shard `new` of 4."""
    for number in range(1_000):
        name = f"v-{number}"
        if shard_of(f"anonymous-{name}", 2) == old and shard_of(f"anonymous-{name}", 4) == new:
            return name
    raise AssertionError("no such visitor")


MOVING = visitor(1, 3)  # shard 1 -> shard 3
STAYING = visitor(1, 1)


@dataclass
class MockActivities:
    """Records deliveries (which shard, which signals) in the order they ran; a shard's
    deliveries can be held back by closing its gate."""

    deliveries: list[tuple[int, list[str]]] = field(default_factory=list)
    gates: dict[int, asyncio.Event] = field(default_factory=dict)
    waiting: list[int] = field(default_factory=list)  # shards whose delivery is at its gate
    deleted: set[str] = field(default_factory=set)  # routing keys a delivery deletes

    @activity.defn(name="deliver_journeys")
    async def deliver(self, params: DeliverInput) -> DeliverResult:
        shard = int(params.lane.rsplit("-", 1)[1])
        gate = self.gates.get(shard)
        if gate is not None:
            self.waiting.append(shard)
            await gate.wait()
        self.deliveries.append((shard, [s.dedupe_key for s in params.signals]))
        deleted = [s.routing() for s in params.signals if s.routing() in self.deleted]
        return DeliverResult(
            outcome=DeliveryOutcome(
                stats=DeliveryStats(events=len(params.signals)), deleted_identities=deleted
            ),
            interruption="clean" if params.check_interruption else "unchecked",
        )

    @activity.defn(name="settle_journeys")
    async def settle(self, params: SettleInput) -> SettleProgress:
        raise AssertionError("nothing is in doubt here")

    @activity.defn(name="finish_journeys")
    async def finish(self, params: FinishInput) -> None:
        return None

    def delivered_by(self, shard: int) -> list[str]:
        return [key for by, keys in self.deliveries if by == shard for key in keys]

    def position(self, key: str) -> int:
        return next(i for i, (_, keys) in enumerate(self.deliveries) if key in keys)


@asynccontextmanager
async def shards(
    client: Client, mocks: MockActivities, count: int, **settings: Any
) -> AsyncIterator[tuple[str, list[Shard]]]:
    """`count` shards on a worker of their own; `settings` override ShardSettings."""
    settings.setdefault("continue_notice_seconds", 0)  # (a test continues-as-new often)
    queue = f"reshard-test-{uuid.uuid4()}"
    with journey_activation_pool() as activations:
        async with journey_worker(
            client,
            queue,
            [JourneyShardWorkflow, JourneyLayoutWorkflow],
            [mocks.deliver, mocks.settle, mocks.finish, announce_layout],
            activations,
        ):
            handles = [
                await client.start_workflow(
                    JourneyShardWorkflow.run,
                    ShardInput(shard=n, settings=ShardSettings.model_validate(settings)),
                    id=shard_workflow_id(queue, n),
                    task_queue=queue,
                )
                for n in range(count)
            ]
            try:
                yield queue, handles
            finally:
                for n in range(4):  # the shards a change started too
                    handle = client.get_workflow_handle_for(
                        JourneyShardWorkflow.run, shard_workflow_id(queue, n)
                    )
                    with contextlib.suppress(RPCError):  # (a shard no change started)
                        await keep_history(client, handle, f"-shard{n}")
                    with contextlib.suppress(RPCError):
                        await handle.terminate("test over")
                with contextlib.suppress(RPCError):
                    await client.get_workflow_handle(layout_workflow_id(queue)).terminate()


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 30) -> None:
    await eventually(check, within, what=what)


async def stats(handle: Shard) -> ShardStats:
    return await handle.query(JourneyShardWorkflow.stats)


async def delivered(mocks: MockActivities, *keys: str) -> None:
    await eventually(
        lambda: all(any(key in ks for _, ks in mocks.deliveries) for key in keys), within=30
    )


async def tell(client: Client, queue: str, change: LayoutChange) -> list[Shard]:
    """Announce a change as JourneyLayoutWorkflow does (the new shards started)."""
    await announce(client, queue, change)
    return [
        client.get_workflow_handle_for(JourneyShardWorkflow.run, shard_workflow_id(queue, n))
        for n in range(change.shards())
    ]


def change_due_now() -> LayoutChange:
    """2 -> 4 shards, old shards handing off as soon as they can."""
    return LayoutChange(epoch=1, old_shards=2, new_shards=4, handoff_at=datetime.now(UTC))


async def test_a_moving_identity_is_held_until_its_old_shard_delivered_and_handed_off(
    client: Client,
) -> None:
    mocks = MockActivities()
    first, second, third = view(1, MOVING), view(2, MOVING), view(3, MOVING)
    async with shards(client, mocks, 2) as (queue, (_, old)):
        # Given the old owner delivered one event of the identity
        await send(old, first)
        await delivered(mocks, first.dedupe_key)
        # ... and is delivering a second one when the change to 4 shards takes effect
        mocks.gates[1] = asyncio.Event()
        await send(old, second)
        await eventually(lambda: 1 in mocks.waiting, within=30)
        new = (await tell(client, queue, change_due_now()))[3]
        # When the new owner gets the identity's next event, and a redelivery of the first
        await send(new, third, first)
        # Then it holds them while the old owner has not handed off
        await until(lambda: _held(new, 2), "the new owner held both")
        assert mocks.delivered_by(3) == []
        # When the old owner's delivery finishes (and it hands off)
        mocks.gates[1].set()
        await delivered(mocks, third.dedupe_key)
        new_stats = await stats(new)
    # Then the new owner delivered only the new event, after the old owner's last one,
    # and recognised the redelivery from the inherited memory
    assert mocks.delivered_by(3) == [third.dedupe_key]
    assert mocks.position(second.dedupe_key) < mocks.position(third.dedupe_key)
    assert (new_stats.duplicates, new_stats.handoff_parts_received) == (1, 1)


async def _held(handle: Shard, count: int) -> bool:
    return (await stats(handle)).held == count


async def test_a_deletion_delivered_by_the_old_shard_is_honoured_by_the_new_one(
    client: Client,
) -> None:
    mocks = MockActivities(deleted={f"anonymous-{MOVING}"})
    deletion, later = view(1, MOVING), view(2, MOVING)
    async with shards(client, mocks, 2) as (queue, (_, old)):
        # Given the old owner delivered the identity's deletion
        await send(old, deletion)
        await delivered(mocks, deletion.dedupe_key)
        # When the identity moves and an event of it reaches its new owner
        new = (await tell(client, queue, change_due_now()))[3]
        await send(new, later)
        await until(lambda: _received(new, 1), "the new owner accepted the handoff")
        await until(lambda: _after_deletion(new), "the new owner judged the event")
    # Then nothing more is delivered for it
    assert mocks.delivered_by(3) == []


async def _received(handle: Shard, parts: int) -> bool:
    return (await stats(handle)).handoff_parts_received == parts


async def _after_deletion(handle: Shard) -> bool:
    return (await stats(handle)).after_deletion == 1


async def test_a_signal_reaching_the_old_shard_after_its_handoff_is_forwarded_once(
    client: Client,
) -> None:
    mocks = MockActivities()
    straggler, staying = view(1, MOVING), view(2, STAYING)
    async with shards(client, mocks, 2) as (queue, (_, old)):
        # Given the old owner handed off to the new one
        new = (await tell(client, queue, change_due_now()))[3]
        await until(lambda: _received(new, 1), "the handoff arrived")
        # When a window routed by the old layout arrives late, twice, with an identity
        # that stays
        await send(old, straggler, staying)
        await send(old, straggler)
        await delivered(mocks, straggler.dedupe_key, staying.dedupe_key)
        old_stats = await stats(old)
    # Then the moved identity's event is delivered once, by its new owner; the other stays
    assert mocks.delivered_by(3) == [straggler.dedupe_key]
    assert mocks.delivered_by(1) == [staying.dedupe_key]
    assert (old_stats.forwarded, old_stats.duplicates) == (1, 1)


async def test_a_shard_continued_as_new_after_its_handoff_still_forwards(
    client: Client,
) -> None:
    mocks = MockActivities()
    async with shards(client, mocks, 2, max_run_signals=1) as (queue, (_, old)):
        # Given an old owner that handed off, and then continued-as-new after a delivery
        new = (await tell(client, queue, change_due_now()))[3]
        await until(lambda: _received(new, 1), "the handoff arrived")
        staying = view(1, STAYING)
        await send(old, staying)
        await delivered(mocks, staying.dedupe_key)
        await until(lambda: _runs(old, 2), "the old owner continued-as-new")
        # When a signal of the moved identity reaches it
        straggler = view(2, MOVING)
        await send(old, straggler)
        await delivered(mocks, straggler.dedupe_key)
    # Then the next run still knew the reshard: the new owner delivered it
    assert mocks.delivered_by(3) == [straggler.dedupe_key]


async def _runs(handle: Shard, runs: int) -> bool:
    return (await stats(handle)).runs >= runs


async def test_reshard_through_the_layout_workflow_completes_with_every_handoff(
    client: Client,
) -> None:
    mocks = MockActivities()
    async with shards(client, mocks, 2) as (queue, (_, old)):
        # Given two shards that delivered
        first = view(1, MOVING)
        await send(old, first)
        await delivered(mocks, first.dedupe_key)
        # When a reshard to 4 is requested (short lead and grace for the test)
        request = ReshardRequest(shards=4, lead_seconds=1.0, grace_seconds=0.2)
        scheduled = await reshard(client, queue, 2, request)
        assert scheduled.next is not None
        assert scheduled.next.shards == 4
        # (another one is refused while it is under way: `ct-insider reshard` exits 2)
        with pytest.raises(UsageError, match="a reshard is in progress"):
            await reshard(client, queue, 2, ReshardRequest(shards=8))
        # Then it completes: every old shard handed off, the layout is 4 shards
        await until(
            lambda: _layout_epoch(client, queue, 1), "the layout workflow completed the change"
        )
        new = client.get_workflow_handle_for(JourneyShardWorkflow.run, shard_workflow_id(queue, 3))
        new_stats = await stats(new)
        status = await read_layout(client, queue, 2)
        with pytest.raises(UsageError) as refused_same_count:
            await reshard(client, queue, 2, ReshardRequest(shards=4))
    assert (status.current.epoch, status.current.shards, status.next) == (1, 4, None)
    assert new_stats.handoff_parts_received == 1
    assert refused_same_count.value.args == ("the journey shards are 4 already",)


async def _layout_epoch(client: Client, queue: str, epoch: int) -> bool:
    return (await read_layout(client, queue, 2)).current.epoch == epoch


async def test_a_quiet_old_shard_hands_off_at_a_moment_moved_later(client: Client) -> None:
    mocks = MockActivities()
    async with shards(client, mocks, 2) as (queue, _):
        # Given a change announced with its handoff 2 s ahead, then announced again (a slow
        # announcement) with the handoff 4 s ahead, and no traffic at all
        now = datetime.now(UTC)
        change = LayoutChange(
            epoch=1, old_shards=2, new_shards=4, handoff_at=now + timedelta(seconds=2)
        )
        new = (await tell(client, queue, change))[3]
        later = change.model_copy(update={"handoff_at": now + timedelta(seconds=4)})
        await tell(client, queue, later)
        # When both moments pass, Then the quiet old shard 1 has handed off to shard 3
        await until(lambda: _received(new, 1), "the quiet old shard's handoff", within=60)
