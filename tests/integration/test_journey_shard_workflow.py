"""JourneyShardWorkflow's orchestration with mocked activities, on the real dev server.

The delivery, settlement and bookkeeping activities are stand-ins that record what the
shard asked and answer as scripted, so each rule of the workflow is checked on its own:
doubts are settled before anything later goes out, a failed delivery is retried with its
batch, unsent signals are requeued, a rebuilt shard asks about interruption on every
rebuild, continue-as-new carries the memory.

(The time-skipping test server cannot be downloaded here - no internet - so the timers
these tests meet are kept short by their settings.)

`UPDATE_HISTORIES=1` writes the histories of these runs to tests/fixtures/histories/, which
tests/unit/test_replay.py replays to catch a change that breaks determinism.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.journey import NOT_SENT, DeliverInput, DeliverResult, FinishInput, SettleInput
from ct_insider.codec import decode_in_place
from ct_insider.insider.models import Identifiers
from ct_insider.journeys.archive import unpack
from ct_insider.journeys.archive_lane import ArchiveWork
from ct_insider.journeys.delivery import Bookkeeping, DeliveryOutcome, DeliveryStats
from ct_insider.journeys.memory import digest
from ct_insider.journeys.plan import PlannedUser
from ct_insider.journeys.settle import SettleProgress
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal
from ct_insider.journeys.storefront import StorefrontEvent
from tests.conftest import eventually
from workers.main import journey_activation_pool, journey_worker
from workflows.journey_shard import (
    JourneyShardWorkflow,
    ShardInput,
    ShardSettings,
    ShardStats,
    shard_workflow_id,
)

pytestmark = pytest.mark.integration

HISTORIES = Path(__file__).parent.parent / "fixtures" / "histories"
Behaviour = Callable[[DeliverInput], DeliverResult]


def view(number: int, visitor: str = "v-1") -> JourneySignal:
    event = StorefrontEvent.model_validate(
        {
            "event_id": f"e-{number}-{uuid.uuid4()}",
            "type": "product_view",
            "occurred_at": datetime(2026, 12, 1, 12, 0, number % 60, tzinfo=UTC),
            "identity": {"anonymous_id": visitor},
            "sku": f"SKU-{number}",
        }
    )
    return JourneySignal(
        dedupe_key=f"event:{event.event_id}",
        kind="storefront",
        type=event.type,
        occurred_at=event.occurred_at,
        identity=JourneyIdentity(anonymous_id=visitor),
        storefront=event,
    )


def reaches(count: int, size: Callable[[], int]) -> Callable[[], bool]:
    return lambda: size() == count


def delivered(params: DeliverInput) -> DeliverResult:
    return DeliverResult(
        outcome=DeliveryOutcome(stats=DeliveryStats(events=len(params.signals))),
        interruption="clean" if params.check_interruption else "unchecked",
    )


@dataclass
class MockActivities:
    """Records every call; answers deliveries by the scripted behaviours, then normally."""

    script: deque[Behaviour] = field(default_factory=deque)
    deliveries: list[DeliverInput] = field(default_factory=list)
    settlements: list[SettleInput] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    finished: list[Bookkeeping] = field(default_factory=list)
    archive_failures: int = 0  # the next archive writes that fail
    archived: list[ArchiveWork] = field(default_factory=list)

    @activity.defn(name="deliver_journeys")
    async def deliver(self, params: DeliverInput) -> DeliverResult:
        self.deliveries.append(params)
        self.calls.append("deliver")
        behaviour = self.script.popleft() if self.script else delivered
        return behaviour(params)

    @activity.defn(name="settle_journeys")
    async def settle(self, params: SettleInput) -> SettleProgress:
        self.settlements.append(params)
        self.calls.append("settle")
        await asyncio.sleep(0.3)  # a settlement takes a while: nothing may overtake it
        self.calls.append("settled")
        return SettleProgress(settled=list(range(len(params.users))), found=len(params.users))

    @activity.defn(name="finish_journeys")
    async def finish(self, params: FinishInput) -> None:
        self.calls.append("finish")
        self.finished.append(params.book)

    @activity.defn(name="archive_journeys")
    async def archive(self, params: ArchiveWork) -> None:
        self.calls.append("archive")
        if self.archive_failures:
            self.archive_failures -= 1
            raise ApplicationError("commercetools unreachable", non_retryable=True)
        self.archived.append(params)

    def delivered_keys(self) -> list[str]:
        return [s.dedupe_key for d in self.deliveries for s in d.signals]


@asynccontextmanager
async def shard(
    client: Client, mocks: MockActivities, *, cache_size: int = 100, **settings: Any
) -> AsyncIterator[tuple[WorkflowHandle[JourneyShardWorkflow, ShardStats], ShardSettings]]:
    queue = f"shard-test-{uuid.uuid4()}"
    with journey_activation_pool() as activations:
        async with journey_worker(
            client,
            queue,
            [JourneyShardWorkflow],
            [mocks.deliver, mocks.settle, mocks.finish, mocks.archive],
            activations,
            cache_size,
        ):
            shard_settings = ShardSettings.model_validate(settings)
            handle = await client.start_workflow(
                JourneyShardWorkflow.run,
                ShardInput(shard=0, settings=shard_settings),
                id=shard_workflow_id(queue, 0),
                task_queue=queue,
            )
            try:
                yield handle, shard_settings
            finally:
                await keep_history(client, handle)
                await handle.terminate("test over")


async def keep_history(
    client: Client, handle: WorkflowHandle[JourneyShardWorkflow, ShardStats]
) -> None:
    if not os.environ.get("UPDATE_HISTORIES"):
        return
    test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
    runs = [run async for run in client.list_workflows(f"WorkflowId = '{handle.id}'")]
    for number, run in enumerate(sorted(runs, key=lambda r: r.start_time)):
        history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        # Recorded in clear (the session's key is thrown away): the replay tests need no key.
        codec = client.data_converter.payload_codec
        for event in history.events:
            if codec is not None:
                await decode_in_place(event, codec)
        HISTORIES.mkdir(parents=True, exist_ok=True)
        (HISTORIES / f"{test}-run{number}.json").write_text(history.to_json())


async def send(
    handle: WorkflowHandle[JourneyShardWorkflow, ShardStats], *signals: JourneySignal
) -> None:
    # As the bridge sends a window: a JSON array of signals.
    await handle.signal(
        "deliver", [s.model_dump(mode="json", exclude_defaults=True) for s in signals]
    )


async def test_a_doubt_is_settled_before_anything_later_is_delivered(client: Client) -> None:
    mocks = MockActivities()
    first = view(1)
    doubtful = PlannedUser(
        identity="anonymous-v-1", identifiers=Identifiers(custom={"a": "v-1"}), signals=[0]
    )

    def in_doubt(params: DeliverInput) -> DeliverResult:
        return DeliverResult(outcome=DeliveryOutcome(in_doubt=[doubtful]))

    mocks.script.append(in_doubt)
    async with shard(client, mocks) as (handle, _):
        # Given a delivery whose request may have been stored
        await send(handle, first)
        await eventually(lambda: "settle" in mocks.calls)
        # When more signals arrive while it is being settled
        await send(handle, view(2))
        # Then they are delivered only after the settlement finished
        await eventually(lambda: len(mocks.deliveries) == 2)
        stats = await handle.query(JourneyShardWorkflow.stats)
    assert mocks.calls[:4] == ["deliver", "settle", "settled", "deliver"]
    assert mocks.settlements[0].users == [doubtful]
    assert [s.dedupe_key for s in mocks.settlements[0].signals] == [first.dedupe_key]
    assert stats.found_in_insider == 1


async def test_a_delivery_that_fails_before_sending_is_retried_with_its_batch(
    client: Client,
) -> None:
    mocks = MockActivities()

    def fails(_params: DeliverInput) -> DeliverResult:
        raise ApplicationError("commercetools unreachable", type=NOT_SENT, non_retryable=True)

    mocks.script.append(fails)
    signals = [view(1), view(2)]
    async with shard(client, mocks) as (handle, _):
        # Given a delivery that fails before it sends anything
        await send(handle, *signals)
        # When the shard backs off and tries again
        await eventually(lambda: len(mocks.deliveries) == 2, within=20)
        stats = await handle.query(JourneyShardWorkflow.stats)
    # Then the same batch goes again, nothing lost, and nothing is in doubt
    again = mocks.deliveries[1].signals
    assert [s.dedupe_key for s in again] == [s.dedupe_key for s in signals]
    assert not any(s.doubt for s in again)
    assert stats.failed_deliveries == 1
    assert stats.delivered == 2


async def test_a_delivery_that_failed_otherwise_may_have_sent_so_its_batch_goes_in_doubt(
    client: Client,
) -> None:
    mocks = MockActivities()

    def crashes(_params: DeliverInput) -> DeliverResult:
        raise ApplicationError("timed out after sending", non_retryable=True)

    mocks.script.append(crashes)
    async with shard(client, mocks) as (handle, _):
        # Given a delivery that fails for a reason other than "nothing was sent"
        await send(handle, view(1), view(2))
        # When the shard tries again
        await eventually(lambda: len(mocks.deliveries) == 2, within=20)
    # Then the batch goes again marked in doubt: Insider is asked before anything is sent
    assert all(s.doubt for s in mocks.deliveries[1].signals)


async def test_signals_a_dead_task_may_have_sent_stay_in_doubt_beyond_the_first_batch(
    client: Client,
) -> None:
    mocks = MockActivities()

    def cut_short(params: DeliverInput) -> DeliverResult:
        # As if the task that accepted these signals had died mid-delivery.
        return DeliverResult(
            outcome=DeliveryOutcome(),
            interruption="cut-short",
            cut_short_at=max(s.accepted_in for s in params.signals),
        )

    mocks.script.append(cut_short)
    first = [view(n) for n in range(5)]
    async with shard(client, mocks, max_batch=2) as (handle, _):
        # Given five signals accepted together, delivered two at a time, and a first
        # delivery that finds the task before it cut short
        await send(handle, *first)
        await eventually(lambda: len(mocks.delivered_keys()) == 5)
        # When a signal arrives afterwards
        later = view(9)
        await send(handle, later)
        await eventually(lambda: len(mocks.delivered_keys()) == 6)
    # Then the other three of those five go in doubt too; the later one does not
    doubts = {s.dedupe_key: s.doubt for d in mocks.deliveries[1:] for s in d.signals}
    assert [doubts[s.dedupe_key] for s in first[2:]] == [True, True, True]
    assert doubts[later.dedupe_key] is False


async def test_unsent_signals_are_requeued_and_delivered_in_order(client: Client) -> None:
    mocks = MockActivities()
    signals = [view(1), view(2, visitor="v-2"), view(3)]

    def second_unsent(params: DeliverInput) -> DeliverResult:
        return DeliverResult(
            outcome=DeliveryOutcome(stats=DeliveryStats(events=2), unsent=[1], retry_after=0.2)
        )

    mocks.script.append(second_unsent)
    async with shard(client, mocks) as (handle, _):
        # Given a delivery Insider did not take one signal of (429 beyond retries)
        await send(handle, *signals)
        # Then the shard waits and delivers it again, with what arrived meanwhile after it
        await send(handle, view(4, visitor="v-2"))
        await eventually(lambda: len(mocks.delivered_keys()) >= 5)
        stats = await handle.query(JourneyShardWorkflow.stats)
    later = [s.dedupe_key for d in mocks.deliveries[1:] for s in d.signals]
    assert later[0] == signals[1].dedupe_key
    assert stats.delivered == 4


async def test_a_rebuilt_shard_asks_whether_its_last_delivery_was_cut_short_after_every_rebuild(
    client: Client,
) -> None:
    mocks = MockActivities()
    # Given a worker that keeps no workflow in memory: every task rebuilds the shard
    async with shard(client, mocks, cache_size=0) as (handle, _):
        # When signals arrive one task after another
        for number in range(4):
            await send(handle, view(number))
            await eventually(reaches(number + 1, lambda: len(mocks.deliveries)))
    # Then every delivery after a rebuild asked Temporal first (a clean answer found by an
    # earlier rebuild, replayed from history, says nothing about this one)
    assert [d.check_interruption for d in mocks.deliveries] == [True, True, True, True]


async def test_a_run_asks_once_and_then_trusts_its_history(client: Client) -> None:
    mocks = MockActivities()
    async with shard(client, mocks) as (handle, _):
        for number in range(3):
            await send(handle, view(number))
            await eventually(reaches(number + 1, lambda: len(mocks.deliveries)))
    # (its first task could have died before any replay: it is not a rebuild to the SDK)
    assert [d.check_interruption for d in mocks.deliveries] == [True, False, False]


async def test_continue_as_new_carries_the_dedupe_memory_and_the_statistics(
    client: Client,
) -> None:
    mocks = MockActivities()
    signals = [view(number) for number in range(12)]
    async with shard(client, mocks, max_run_signals=4) as (handle, _):
        # Given a shard that continues-as-new every few signals
        for number in range(0, 12, 2):
            await send(handle, *signals[number : number + 2])
            await eventually(reaches(number + 2, lambda: len(mocks.delivered_keys())))
        # When the first signals are delivered again, runs later
        await send(handle, *signals[:3])
        await asyncio.sleep(0.5)
        stats = await handle.query(JourneyShardWorkflow.stats)
    # Then they are recognised and nothing is delivered twice
    assert mocks.delivered_keys() == [s.dedupe_key for s in signals]
    assert (stats.received, stats.duplicates, stats.delivered) == (15, 3, 12)
    assert stats.runs >= 3


async def test_unfinished_bookkeeping_is_finished_by_the_shard(client: Client) -> None:
    mocks = MockActivities()
    book = Bookkeeping(ledger={"order-1": ["purchase:line-1"]})

    def bookkeeping_failed(params: DeliverInput) -> DeliverResult:
        return DeliverResult(outcome=DeliveryOutcome(unfinished=book))

    mocks.script.append(bookkeeping_failed)
    async with shard(client, mocks) as (handle, _):
        await send(handle, view(1))
        await eventually(lambda: mocks.finished == [book])
    assert mocks.calls == ["deliver", "finish"]


async def test_gathering_puts_shuffled_signals_back_in_order(client: Client) -> None:
    mocks = MockActivities()
    signals = [view(number) for number in range(6)]
    async with shard(client, mocks, gather_seconds=1.0) as (handle, _):
        for signal in reversed(signals):
            await send(handle, signal)
        await eventually(lambda: len(mocks.delivered_keys()) == 6)
    assert mocks.delivered_keys() == [s.dedupe_key for s in signals]
    assert len(mocks.deliveries) == 1


async def test_signals_of_a_deleted_customer_are_dropped(client: Client) -> None:
    mocks = MockActivities()

    def deleted(params: DeliverInput) -> DeliverResult:
        return DeliverResult(outcome=DeliveryOutcome(deleted_identities=["anonymous-v-1"]))

    mocks.script.append(deleted)
    async with shard(client, mocks) as (handle, _):
        await send(handle, view(1))
        await eventually(lambda: len(mocks.deliveries) == 1)
        await send(handle, view(2), view(3, visitor="v-2"))
        await eventually(lambda: len(mocks.deliveries) == 2)
        stats = await handle.query(JourneyShardWorkflow.stats)
    assert [s.identity.anonymous_id for s in mocks.deliveries[1].signals] == ["v-2"]
    assert stats.after_deletion == 1


async def test_an_unreadable_signal_is_dead_lettered_and_the_rest_of_its_window_delivered(
    client: Client,
) -> None:
    mocks = MockActivities()
    good = view(1)
    async with shard(client, mocks) as (handle, _):
        # Given a window with one signal this worker cannot read (a newer bridge's)
        unreadable = {"dedupe_key": "event:from-the-future", "kind": "hologram"}
        await handle.signal(
            "deliver", [good.model_dump(mode="json", exclude_defaults=True), unreadable]
        )
        # Then the readable one is delivered and the other one parked with its reason
        await eventually(lambda: mocks.delivered_keys() == [good.dedupe_key])
        await eventually(lambda: mocks.finished)
    [letter] = mocks.finished[0].letters
    assert letter.record_id == "event:from-the-future"
    assert any("kind" in reason for reason in letter.reasons)
    assert letter.redrive == {"signal": unreadable}


async def test_a_failing_dedupe_archive_holds_no_delivery_up_and_is_written_later(
    client: Client,
) -> None:
    mocks = MockActivities(archive_failures=1)
    async with shard(client, mocks, seen_capacity=16) as (handle, _):
        # Given a shard remembering 16 keys, whose first archive write fails
        signals = [view(number) for number in range(24)]
        for signal in signals:
            await send(handle, signal)
        # Then every signal is delivered all the same
        await eventually(lambda: len(mocks.delivered_keys()) == 24)
        assert "archive" in mocks.calls
        assert not mocks.archived

        # And once its back-off is over, the next delivery writes what the memory let go of
        async def written() -> bool:
            await send(handle, view(len(mocks.delivered_keys())))
            return bool(mocks.archived)

        await eventually(written)
        stats = await handle.query(JourneyShardWorkflow.stats)
    # (the first write that went through holds what the memory dropped meanwhile, at most
    # a quarter of its capacity: the oldest generations beyond that were given up)
    work = mocks.archived[0]
    archived = [key for g in work.writes for key in unpack(g.keys)]
    assert 0 < len(archived) <= 4
    assert set(archived) <= {digest(s.dedupe_key) for s in signals}
    assert stats.archived_objects >= len(work.writes)


async def test_continue_as_new_carries_the_archive_lane_and_a_forgotten_signal_is_looked_up(
    client: Client,
) -> None:
    mocks = MockActivities()
    signals = [view(number) for number in range(40)]
    async with shard(client, mocks, seen_capacity=16, max_run_signals=8) as (handle, _):
        # Given a shard remembering 16 keys, continuing-as-new every few signals, that took
        # 40 signals one window at a time
        for number, signal in enumerate(signals):
            await send(handle, signal)
            await eventually(reaches(number + 1, lambda: len(mocks.delivered_keys())))
        # When the first one is delivered again, runs later
        await send(handle, signals[0])
        await eventually(reaches(41, lambda: len(mocks.delivered_keys())))
        stats = await handle.query(JourneyShardWorkflow.stats)
    # Then what the memory let go of was archived across runs in one lane, numbered on
    writes = [g for work in mocks.archived for g in work.writes]
    assert stats.runs >= 3
    assert len({g.lane for g in writes}) == 1
    assert [g.sequence for g in writes] == list(range(len(writes)))
    holding = {g.sequence for g in writes if digest(signals[0].dedupe_key) in unpack(g.keys)}
    assert {digest(s.dedupe_key) for s in signals[:24]} <= {
        key for g in writes for key in unpack(g.keys)
    }
    # And the redelivery went to its delivery marked forgotten, pointed at the object
    # holding its key (whether it is a duplicate is the delivery's to find out)
    last = mocks.deliveries[-1]
    assert [s.dedupe_key for s in last.signals] == [signals[0].dedupe_key]
    assert last.signals[0].forgotten
    assert last.archive is not None
    assert holding
    assert holding <= set(last.archive.sequences)
