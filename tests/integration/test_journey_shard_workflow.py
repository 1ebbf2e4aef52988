"""JourneyShardWorkflow's orchestration with mocked activities, on the real dev server.

The delivery, settlement and bookkeeping activities are stand-ins that record what the
shard asked and answer as scripted, so each rule of the workflow is checked on its own:
doubts are settled before anything later goes out, a failed delivery is retried with its
batch, unsent signals are requeued, a rebuilt shard asks about interruption on every
rebuild, continue-as-new carries the memory. Where what the delivery activity itself does
matters (its history check, the failure it reports), the real activity runs over a
scripted deliverer; a task that dies is one a stand-in worker takes and fails.

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
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    PollWorkflowTaskQueueRequest,
    RespondWorkflowTaskFailedRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from activities.journey import (
    NOT_SENT,
    DeliverInput,
    DeliverResult,
    FinishInput,
    JourneyActivities,
    SettleInput,
)
from bridge.commit import ShardCommitter
from ct_insider.codec import decode_in_place
from ct_insider.commercetools.errors import CommercetoolsUnavailable
from ct_insider.commercetools.models import Customer
from ct_insider.insider.models import Identifiers
from ct_insider.journeys.archive import DedupeArchive, unpack
from ct_insider.journeys.archive_lane import ArchiveWork
from ct_insider.journeys.delivery import (
    Bookkeeping,
    DeliveryOutcome,
    DeliveryStats,
    JourneyDeliverer,
)
from ct_insider.journeys.plan import PlannedUser
from ct_insider.journeys.settle import DoubtSettler, SettleProgress
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal, digest
from ct_insider.journeys.storefront import StorefrontEvent
from starters.roll import roll, until_rolled
from tests.conftest import eventually
from workers.main import journey_activation_pool, journey_worker
from workflows.journey_shard import (
    CONTINUING_MEMO,
    SEND_WHAT_EARLIER_TASKS_ACCEPTED,
    SHARD_TASK_TIMEOUT,
    UNREADABLE_KEPT_BYTES,
    JourneyShardWorkflow,
    ShardInput,
    ShardSettings,
    ShardStats,
    shard_workflow_id,
)

pytestmark = pytest.mark.integration

HISTORIES = Path(__file__).parent.parent / "fixtures" / "histories"
IN_FLIGHT = timedelta(milliseconds=300)  # from a sane clock to the bridge
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
    # Set: settlements wait for it (a test holds one open until later signals reached the
    # shard), not for a guessed while.
    settle_gate: asyncio.Event | None = None

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
        if self.settle_gate is not None:
            await self.settle_gate.wait()
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


@dataclass
class Delivery:
    keys: list[str]
    doubts: list[bool]
    interrupted: bool
    failed: bool = False


class ScriptedDeliverer(JourneyDeliverer):
    """What the real delivery activity (`JourneyActivities.deliver_journeys`: the history
    check, the failure it raises) delivers through: `answer` returns what became of a
    batch, or raises as the real deliverer does before it sends anything."""

    def __init__(self, answer: Callable[[list[JourneySignal], bool], DeliveryOutcome]) -> None:
        # No clients: nothing here talks to commercetools or Insider.
        self.answer = answer
        self.calls: list[Delivery] = []

    async def deliver(
        self,
        lane: str,
        signals: list[JourneySignal],
        *,
        interrupted: bool = False,
        skip: Collection[int] = (),
    ) -> DeliveryOutcome:
        call = Delivery([s.dedupe_key for s in signals], [s.doubt for s in signals], interrupted)
        self.calls.append(call)
        try:
            return self.answer(signals, interrupted)
        except Exception:
            call.failed = True
            raise

    def delivered_keys(self) -> list[str]:
        return [key for call in self.calls if not call.failed for key in call.keys]


def sent(signals: list[JourneySignal], interrupted: bool) -> DeliveryOutcome:
    """As the real deliverer answers: users that may repeat a delivery go to settlement."""
    doubtful = [
        PlannedUser(
            identity=signal.routing(),
            identifiers=Identifiers(custom={"ct_anonymous_id": signal.identity.anonymous_id}),
            signals=[index],
        )
        for index, signal in enumerate(signals)
        if interrupted or signal.doubt
    ]
    return DeliveryOutcome(
        stats=DeliveryStats(events=len(signals) - len(doubtful)), in_doubt=doubtful
    )


async def fail_next_task(client: Client, queue: str) -> None:
    """Take the shard's next workflow task as a worker would, and fail it: as if that worker
    died during it (Temporal's record of a task cut short, like one that timed out)."""
    task = await client.workflow_service.poll_workflow_task_queue(
        PollWorkflowTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=queue), identity="dying"
        )
    )
    assert task.task_token, "no workflow task to cut short"
    await client.workflow_service.respond_workflow_task_failed(
        RespondWorkflowTaskFailedRequest(
            namespace=client.namespace,
            task_token=task.task_token,
            cause=WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
            identity="dying",
        )
    )


@asynccontextmanager
async def shard(
    client: Client,
    mocks: MockActivities,
    *,
    cache_size: int = 100,
    deliverer: ScriptedDeliverer | None = None,
    cut_short_with: Sequence[JourneySignal] = (),
    **settings: Any,
) -> AsyncIterator[tuple[WorkflowHandle[JourneyShardWorkflow, ShardStats], ShardSettings]]:
    """A shard on a worker of its own. `deliverer`: deliveries run the real activity over it
    (else the mock). `cut_short_with`: these signals reach the shard before any worker, and
    the first task that holds them dies."""
    queue = f"shard-test-{uuid.uuid4()}"
    settings.setdefault("continue_notice_seconds", 0)  # (a test continues-as-new often)
    shard_settings = ShardSettings.model_validate(settings)
    deliver: Callable[..., Any] = mocks.deliver
    if deliverer is not None:
        # deliver_journeys never settles: no settler.
        # (No archive: these tests' signals are never forgotten.)
        deliver = JourneyActivities(
            deliverer, cast(DoubtSettler, None), cast(DedupeArchive, None)
        ).deliver_journeys

    async def start() -> WorkflowHandle[JourneyShardWorkflow, ShardStats]:
        return await client.start_workflow(
            JourneyShardWorkflow.run,
            ShardInput(shard=0, settings=shard_settings),
            id=shard_workflow_id(queue, 0),
            task_queue=queue,
        )

    early = None
    if cut_short_with:
        early = await start()
        await send(early, *cut_short_with)
        await fail_next_task(client, queue)
    with journey_activation_pool() as activations:
        async with journey_worker(
            client,
            queue,
            [JourneyShardWorkflow],
            [deliver, mocks.settle, mocks.finish, mocks.archive],
            activations,
            cache_size,
        ):
            handle = early or await start()
            try:
                yield handle, shard_settings
            finally:
                await keep_history(client, handle)
                await handle.terminate("test over")


async def keep_history(
    client: Client, handle: WorkflowHandle[JourneyShardWorkflow, ShardStats], label: str = ""
) -> None:
    """`label` tells apart the shards of one test."""
    if not os.environ.get("UPDATE_HISTORIES"):
        return
    test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0] + label
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


async def task_completed_after_last_signal(
    handle: WorkflowHandle[JourneyShardWorkflow, ShardStats],
) -> bool:
    """Whether the history shows a workflow task completed after the latest signal."""
    signalled = completed = -1
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_execution_signaled_event_attributes"):
            signalled = event.event_id
        elif event.HasField("workflow_task_completed_event_attributes"):
            completed = event.event_id
    return signalled >= 0 and completed > signalled


async def test_a_doubt_is_settled_before_anything_later_is_delivered(client: Client) -> None:
    mocks = MockActivities()
    first = view(1)
    doubtful = PlannedUser(
        identity="anonymous-v-1", identifiers=Identifiers(custom={"a": "v-1"}), signals=[0]
    )

    def in_doubt(params: DeliverInput) -> DeliverResult:
        return DeliverResult(outcome=DeliveryOutcome(in_doubt=[doubtful]))

    mocks.script.append(in_doubt)
    mocks.settle_gate = asyncio.Event()
    async with shard(client, mocks) as (handle, _):
        # Given a delivery whose request may have been stored
        await send(handle, first)
        await eventually(lambda: "settle" in mocks.calls)
        # When more signals arrive while it is being settled (and the shard has run a task
        # on them: the moment a delivery could overtake the settlement)
        await send(handle, view(2))
        await eventually(lambda: task_completed_after_last_signal(handle), what="signal handled")
        mocks.settle_gate.set()
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
        stats = await eventually(
            lambda: handle.query(JourneyShardWorkflow.stats),
            until=lambda stats: stats.received == 15,
            what="the shard to take in all 15 signals",
        )
        described = await handle.describe()
    # Then they are recognised and nothing is delivered twice
    assert mocks.delivered_keys() == [s.dedupe_key for s in signals]
    assert (stats.received, stats.duplicates, stats.delivered) == (15, 3, 12)
    assert stats.runs >= 3
    # And the runs it continued as take the shard's task timeout, whatever it started with
    task_timeout = described.raw_description.execution_config.default_workflow_task_timeout
    assert task_timeout.ToTimedelta() == SHARD_TASK_TIMEOUT != timedelta(seconds=10)


async def run_histories(client: Client, workflow_id: str) -> list[list[HistoryEvent]]:
    """The history of every run, walked back from the latest (visibility may not list them
    all yet), newest first."""
    histories = []
    run_id: str | None = (await client.get_workflow_handle(workflow_id).describe()).run_id
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        events = [event async for event in handle.fetch_history_events()]
        histories.append(events)
        run_id = events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    return histories


async def refused_continuing_tasks(client: Client, workflow_id: str) -> tuple[int, int]:
    """(runs, workflow tasks Temporal refused with UnhandledCommand) over every run."""
    histories = await run_histories(client, workflow_id)
    refused = sum(
        event.HasField("workflow_task_failed_event_attributes")
        and event.workflow_task_failed_event_attributes.cause
        == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
        for events in histories
        for event in events
    )
    return len(histories), refused


async def test_windows_from_several_bridges_never_refuse_a_continue_as_new(
    client: Client,
) -> None:
    mocks = MockActivities()
    signals = [view(number, visitor=f"v-{number % 7}") for number in range(1200)]
    notice = timedelta(seconds=1)
    async with shard(
        client, mocks, max_run_signals=200, continue_notice_seconds=notice.total_seconds()
    ) as (handle, settings):
        queue = (await handle.describe()).task_queue
        # Given a shard that continues-as-new every ~150 signals with 1 s of notice, and
        # three bridges' committers that describe it every 0.1 s
        bridges = [
            ShardCommitter(
                client, queue, shards=1, window_seconds=0.01, settings=settings, gauges=False
            )
            for _ in range(3)
        ]
        for bridge in bridges:
            bridge.describe_seconds = 0.1
            bridge.update_accept_seconds = 120  # (no fallback: an update has the whole 6 s)

        # When each hands over a window of 2 signals every 20 ms, for 4 s
        async def hand_over(bridge: int) -> None:
            for start in range(bridge * 400, bridge * 400 + 400, 2):
                await asyncio.gather(
                    bridges[bridge].commit(signals[start : start + 2]), asyncio.sleep(0.02)
                )

        await asyncio.gather(*(hand_over(bridge) for bridge in range(3)))
        await eventually(
            lambda: handle.query(JourneyShardWorkflow.stats),
            until=lambda stats: stats.delivered == len(signals),
            what="every signal delivered",
        )
    # Then each signal is delivered once, over several runs
    assert sorted(mocks.delivered_keys()) == sorted(s.dedupe_key for s in signals)
    runs, refused = await refused_continuing_tasks(client, handle.id)
    assert runs >= 3
    # And no run's continuing task was refused: while a run gave notice, its windows came as
    # updates, which an ending run passes to the next (a signal arriving then fails the task:
    # the run is replayed); otherwise as signals, stored without waiting for the shard
    assert refused == 0
    updates = sum(bridge.updates for bridge in bridges)
    assert 0 < updates < sum(bridge.commits for bridge in bridges) == 600
    assert [bridge.fallbacks for bridge in bridges] == [0, 0, 0]
    # And each run continued no sooner than its notice, and the next run began without one
    notices, memos = await notice_given(client, handle.id)
    assert min(notices) >= notice
    assert memos == [False] * len(notices)


async def test_a_shard_gives_notice_before_it_continues_as_new_even_with_nothing_more_coming(
    client: Client,
) -> None:
    mocks = MockActivities()
    signals = [view(number) for number in range(4)]
    notice = timedelta(seconds=0.5)
    async with shard(
        client, mocks, max_run_signals=4, continue_notice_seconds=notice.total_seconds()
    ) as (handle, _):
        # Given a shard due to continue-as-new after 3 signals (its limit spread to 0.75x)
        # When 4 reach it, and nothing after them
        await send(handle, *signals)
        stats = await eventually(
            lambda: handle.query(JourneyShardWorkflow.stats),
            until=lambda stats: stats.runs >= 2,
            what="the shard to continue-as-new",
        )
    # Then it delivered them, gave notice, and continued once the notice ran out
    assert stats.delivered == 4
    notices, memos = await notice_given(client, handle.id)
    assert len(notices) == 1
    assert notice <= notices[0] < notice + timedelta(seconds=5)
    assert memos == [False]


async def notice_given(client: Client, workflow_id: str) -> tuple[list[timedelta], list[Any]]:
    """For each run that continued-as-new, from its notice (the start of the workflow task
    that set the memo: its workflow.now()) to its continuing; and the notice each run that
    was continued began with."""
    notices: list[timedelta] = []
    memos: list[Any] = []
    for events in await run_histories(client, workflow_id):
        given = task_started = None
        for event in events:
            started = event.workflow_execution_started_event_attributes
            if event.HasField("workflow_execution_started_event_attributes") and (
                started.continued_execution_run_id
            ):
                [memo] = await client.data_converter.decode([started.memo.fields[CONTINUING_MEMO]])
                memos.append(memo)
            elif event.HasField("workflow_task_started_event_attributes"):
                task_started = event.event_time.ToDatetime()
            elif event.HasField("workflow_properties_modified_event_attributes"):
                given = given or task_started
            elif event.HasField("workflow_execution_continued_as_new_event_attributes"):
                assert given is not None, "a run continued-as-new without notice"
                notices.append(event.event_time.ToDatetime() - given)
    assert notices
    return notices, memos


async def test_a_signal_goes_out_in_the_task_that_took_it_and_an_update_in_the_next(
    client: Client,
) -> None:
    mocks = MockActivities()
    first, second = view(1), view(2)
    async with shard(client, mocks) as (handle, _):
        # Given a quiet shard
        # When a window comes as a signal
        await send(handle, first)
        await eventually(reaches(1, lambda: len(mocks.delivered_keys())))
        # Then the task that took it sent it: no task was ended to wait for the next
        assert await timers_started(handle) == 0
        # And when a window comes as an update, it goes out in a task after the one that
        # accepted it (an update's acceptance is stored only when its task completes)
        [window] = client.data_converter.payload_converter.to_payloads(
            [[second.model_dump(mode="json", exclude_defaults=True)]]
        )
        await handle.execute_update(JourneyShardWorkflow.deliver_window, RawValue(window))
        await eventually(reaches(2, lambda: len(mocks.delivered_keys())))
        assert await timers_started(handle) == 1
    assert mocks.delivered_keys() == [first.dedupe_key, second.dedupe_key]


async def timers_started(handle: WorkflowHandle[Any, Any]) -> int:
    """The timers the run started (a task ended by `_end_task` starts one)."""
    return sum(
        [
            event.HasField("timer_started_event_attributes")
            async for event in handle.fetch_history_events()
        ]
    )


async def test_a_run_continues_as_new_before_temporal_s_limit_of_updates(client: Client) -> None:
    mocks = MockActivities()
    signals = [view(number) for number in range(6)]
    async with shard(client, mocks, max_run_updates=2, continue_notice_seconds=60) as (handle, _):
        # Given a shard that may take 2 updates per run (Temporal takes 2,000), and gives a
        # minute's notice otherwise (a run that took its updates waits for none)
        # When six windows come as updates, one after the other
        for signal in signals:
            [window] = client.data_converter.payload_converter.to_payloads(
                [[signal.model_dump(mode="json", exclude_defaults=True)]]
            )
            await handle.execute_update(JourneyShardWorkflow.deliver_window, RawValue(window))
        stats = await eventually(
            lambda: handle.query(JourneyShardWorkflow.stats),
            until=lambda stats: stats.delivered == len(signals),
            what="every window delivered",
        )
    # Then each is delivered once, and the shard continued-as-new every two
    assert mocks.delivered_keys() == [s.dedupe_key for s in signals]
    assert stats.runs >= 3


async def test_a_run_begun_before_updates_refuses_them_and_its_windows_come_as_signals(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    mocks = MockActivities()
    signals = [view(number) for number in range(3)]
    # Given a shard whose run began before windows came as updates
    real = workflow.patched
    monkeypatch.setattr(
        workflow, "patched", lambda name: name != SEND_WHAT_EARLIER_TASKS_ACCEPTED and real(name)
    )
    async with shard(client, mocks) as (handle, settings):
        queue = (await handle.describe()).task_queue
        bridge = ShardCommitter(client, queue, shards=1, settings=settings, gauges=False)
        bridge.update_accept_seconds = 120
        bridge.updates_always = True  # (as while a shard gives notice)
        # When the bridge hands it a window
        await bridge.commit(signals)
        await eventually(
            lambda: handle.query(JourneyShardWorkflow.stats),
            until=lambda stats: stats.delivered == len(signals),
            what="the window delivered",
        )
    # Then the shard refused the update (not waited out), the window came as a signal, once
    assert (bridge.commits, bridge.updates, bridge.fallbacks) == (1, 0, 1)
    assert mocks.delivered_keys() == [s.dedupe_key for s in signals]


async def test_a_window_no_shard_takes_in_time_is_stored_as_a_signal(client: Client) -> None:
    mocks = MockActivities()
    queue = f"shard-test-{uuid.uuid4()}"
    signals = [view(number) for number in range(3)]
    # Given a bridge's committer and no worker on the shards' task queue
    committer = ShardCommitter(client, queue, shards=1, window_seconds=0.01, gauges=False)
    committer.update_accept_seconds = 1.0
    committer.updates_always = True  # (as while a shard gives notice)
    # When it hands over a window
    await committer.commit(signals)
    # Then, no shard having taken the update in time, the window was stored as a signal
    assert (committer.commits, committer.updates, committer.fallbacks) == (1, 0, 1)
    # And once a worker runs, the shard delivers it once
    with journey_activation_pool() as activations:
        async with journey_worker(
            client,
            queue,
            [JourneyShardWorkflow],
            [mocks.deliver, mocks.settle, mocks.finish, mocks.archive],
            activations,
        ):
            handle = client.get_workflow_handle_for(
                JourneyShardWorkflow.run, shard_workflow_id(queue, 0)
            )
            await eventually(
                lambda: handle.query(JourneyShardWorkflow.stats),
                until=lambda stats: stats.delivered == len(signals),
                what="the signalled window delivered",
            )
            await handle.terminate("test over")
    assert mocks.delivered_keys() == [s.dedupe_key for s in signals]


async def test_a_shard_due_to_continue_as_new_delivers_what_is_pending_without_gathering(
    client: Client,
) -> None:
    mocks = MockActivities()
    signals = [view(number) for number in range(4)]
    # Given a shard that gathers for ten minutes or 100 signals, and is due to
    # continue-as-new after four (its threshold is spread to at most 5)
    async with shard(client, mocks, gather_seconds=600, max_batch=100, max_run_signals=4) as (
        handle,
        _,
    ):
        # When five signals reach it
        await send(handle, *signals, view(4))
        # Then they are delivered long before the gathering would end, and the run continues
        await eventually(reaches(5, lambda: len(mocks.delivered_keys())))
        stats = await eventually(
            lambda: handle.query(JourneyShardWorkflow.stats),
            until=lambda stats: stats.runs >= 2,  # (runs counts the first)
            what="the shard to continue-as-new",
        )
    assert stats.delivered == 5
    assert len(mocks.deliveries) == 1


@pytest.mark.parametrize("per_task", [1, 2])
async def test_a_shard_with_a_backlog_stores_its_deliveries_every_few(
    client: Client, per_task: int
) -> None:
    mocks = MockActivities()
    signals = [view(number) for number in range(6)]
    # Given a shard that delivers one signal at a time, and chains `per_task` deliveries
    async with shard(
        client, mocks, gather_seconds=0, max_batch=1, max_deliveries_per_task=per_task
    ) as (handle, _):
        # When six reach it at once (a backlog of six deliveries)
        await send(handle, *signals)
        # (a delivery's marker is stored when its task completes, after the delivery ran)
        deliveries_per_task = await eventually(
            lambda: _deliveries_per_task(handle),
            until=lambda counts: sum(counts) == 6,
            what="six deliveries recorded in the history",
        )
    # Then each workflow task that completed recorded at most `per_task` deliveries: a task
    # lost with its worker can leave no more in doubt
    assert len(mocks.deliveries) == 6
    assert max(deliveries_per_task) == per_task


async def _deliveries_per_task(handle: WorkflowHandle[Any, Any]) -> list[int]:
    """The local activities (deliveries) each completed workflow task recorded."""
    counts: list[int] = []
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_task_completed_event_attributes"):
            counts.append(0)
        elif (
            event.HasField("marker_recorded_event_attributes")
            and event.marker_recorded_event_attributes.marker_name == "core_local_activity"
        ):
            counts[-1] += 1  # (the shard's only local activity here)
    return counts


async def test_roll_makes_a_quiet_shard_continue_as_new_with_its_memory(client: Client) -> None:
    mocks = MockActivities()
    first = view(1)
    async with shard(client, mocks) as (handle, _):
        queue = handle.id.removesuffix("-shard-000")
        assert shard_workflow_id(queue, 0) == handle.id
        # Given a quiet shard that delivered a signal, far from continuing by itself
        await send(handle, first)
        await eventually(reaches(1, lambda: len(mocks.delivered_keys())))
        # When an operator rolls the shards (`ct-insider roll --wait`)
        rolls = await roll(client, queue, configured=1)
        await asyncio.wait_for(until_rolled(client, rolls, show=False), timeout=30)
        # Then it runs a new run, which still knows what was delivered
        await send(handle, first)
        stats = await eventually(
            lambda: handle.query(JourneyShardWorkflow.stats),
            until=lambda stats: stats.received == 2,
            what="the new run to take in the redelivery",
        )
    [entry] = rolls
    assert entry.run_before is not None
    assert entry.run_after not in (None, entry.run_before)
    assert (stats.runs, stats.duplicates, stats.delivered) == (2, 1, 1)  # (runs counts the first)
    assert mocks.delivered_keys() == [first.dedupe_key]


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
    # (gathering ends when six are pending: far sooner than its window, however slow the
    # signals arrive)
    async with shard(client, mocks, gather_seconds=600, max_batch=6) as (handle, _):
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


def dated_view(event_id: str, occurred_at: datetime, received_at: datetime) -> JourneySignal:
    """A product view dated by its sender's clock, stamped by the bridge when received."""
    signal = view(0)
    assert signal.storefront is not None
    event = signal.storefront.model_copy(update={"event_id": event_id, "occurred_at": occurred_at})
    return signal.model_copy(
        update={
            "dedupe_key": f"event:{event_id}",
            "occurred_at": occurred_at,
            "received_at": received_at,
            "storefront": event,
        }
    )


async def test_a_fast_clock_makes_no_ordinary_signal_doubtful_across_runs(client: Client) -> None:
    mocks = MockActivities()
    # Windows the bridge received 20 s apart (an hour ago: the shard trusts its stamps),
    # two signals each, in a memory of 16 keys (it reaches back 160 s), over runs of ~9
    # signals; one sender's clock runs 5 minutes ahead
    base = datetime.now(UTC) - timedelta(hours=1)
    windows = [
        [
            dated_view(f"w{w}-{n}", base + timedelta(seconds=20 * w) - IN_FLIGHT, base)
            for n in range(2)
        ]
        for w in range(28)
    ]
    for w, window in enumerate(windows):
        for signal in window:
            signal.received_at = base + timedelta(seconds=20 * w)
    fast = windows[1][1]
    fast.occurred_at += timedelta(minutes=5)
    async with shard(client, mocks, seen_capacity=16, max_run_signals=12) as (handle, _):
        for number, window in enumerate(windows[:26]):
            await send(handle, *window)
            await eventually(reaches(2 * number + 2, lambda: len(mocks.delivered_keys())))
        # When the fast clock's event and one of the first window's are redelivered, after
        # the memory rolled over past them
        stamp = base + timedelta(seconds=20 * 26)
        again = [
            dated_view(s.dedupe_key.removeprefix("event:"), s.occurred_at, stamp)
            for s in (fast, windows[0][0])
        ]
        await send(handle, *again)
        await eventually(reaches(54, lambda: len(mocks.delivered_keys())))
        stats = await handle.query(JourneyShardWorkflow.stats)
    # Then no ordinary signal was doubtful, and both redeliveries were marked forgotten
    # (looked up in the dedupe archive, else Insider is asked): the fast clock's key joined
    # a generation when receipt times reached its date, and was forgotten with it
    delivered = [s for d in mocks.deliveries for s in d.signals]
    assert [s.doubt or s.forgotten for s in delivered[:52]] == [False] * 52
    assert [(s.dedupe_key, s.forgotten) for s in delivered[52:]] == [
        (windows[0][0].dedupe_key, True),
        (fast.dedupe_key, True),
    ]
    assert stats.runs >= 4


async def test_a_cut_short_verdict_is_kept_when_the_delivery_then_fails_before_sending(
    client: Client,
) -> None:
    mocks = MockActivities()

    def commercetools_down_once(signals: list[JourneySignal], interrupted: bool) -> DeliveryOutcome:
        if len(deliverer.calls) <= 3:  # every attempt of the first delivery
            raise CommercetoolsUnavailable(503, "Service Unavailable", [])
        return sent(signals, interrupted)

    deliverer = ScriptedDeliverer(commercetools_down_once)
    signals = [view(1), view(2)]
    # Given a shard whose task holding two signals died (it may have sent them)
    async with shard(client, mocks, deliverer=deliverer, cut_short_with=signals) as (handle, _):
        # When its rebuilt delivery learns that, and then fails before sending (commercetools
        # down for all its attempts), and the shard delivers again after backing off
        await eventually(lambda: len(deliverer.calls) == 4, within=30)
        await eventually(lambda: "settled" in mocks.calls)
        stats = await handle.query(JourneyShardWorkflow.stats)
    # Then the delivery that failed knew (its attempts were held back as interrupted) ...
    assert [c.failed for c in deliverer.calls] == [True, True, True, False]
    assert deliverer.calls[0].interrupted
    # ... and the verdict outlived it: the batch goes again in doubt, and is settled
    assert deliverer.calls[3].doubts == [True, True]
    assert [s.dedupe_key for s in mocks.settlements[0].signals] == [s.dedupe_key for s in signals]
    assert (stats.failed_deliveries, stats.cut_short) == (1, 1)


async def test_every_signal_a_dead_task_held_stays_in_doubt_after_its_first_batch(
    client: Client,
) -> None:
    mocks = MockActivities()
    deliverer = ScriptedDeliverer(sent)
    held = [view(n) for n in range(5)]
    # Given a shard whose task holding five signals died, delivering two at a time (the
    # rebuilt shard accepts all five in its first task, after the one that died)
    rebuilt = shard(client, mocks, deliverer=deliverer, cut_short_with=held, max_batch=2)
    async with rebuilt as (handle, _):
        # When the first batch is settled (a workflow task completes meanwhile) and the
        # others follow, and then a signal arrives the dead task never held
        await eventually(lambda: len(deliverer.calls) == 3, within=30)
        later = view(9)
        await send(handle, later)
        await eventually(lambda: len(deliverer.calls) == 4)
        stats = await handle.query(JourneyShardWorkflow.stats)
    # Then all five go in doubt, the first batch as interrupted, the rest by their mark
    assert deliverer.calls[0].interrupted
    assert [d for c in deliverer.calls[1:3] for d in c.doubts] == [True, True, True]
    assert deliverer.calls[3].keys == [later.dedupe_key]
    assert deliverer.calls[3].doubts == [False]
    assert stats.cut_short == 1


async def test_a_poison_signal_is_dead_lettered_and_the_rest_delivered(client: Client) -> None:
    mocks = MockActivities()
    signals = [view(n) for n in range(6)]
    poison = signals[2]

    def customer_does_not_validate(
        batch: list[JourneySignal], interrupted: bool
    ) -> DeliveryOutcome:
        if poison.dedupe_key in {s.dedupe_key for s in batch}:
            Customer.model_validate({"id": "c-1"})  # raises, before anything is sent
        return sent(batch, interrupted)

    deliverer = ScriptedDeliverer(customer_does_not_validate)
    async with shard(client, mocks, deliverer=deliverer) as (handle, _):
        # Given a batch whose delivery fails before sending because of one of its signals,
        # every time
        await send(handle, *signals)
        # When the shard has tried it a few times
        good = [s.dedupe_key for s in signals if s is not poison]
        await eventually(lambda: sorted(deliverer.delivered_keys()) == sorted(good), within=60)
        await eventually(lambda: mocks.finished)
        stats = await handle.query(JourneyShardWorkflow.stats)
    # Then the batch was halved until that signal failed alone, and was parked with its
    # reason; the others are delivered in order
    assert [len(c.keys) for c in deliverer.calls] == [6, 6, 6, 3, 1, 1, 1, 3]
    assert deliverer.delivered_keys() == good
    [letter] = [letter for book in mocks.finished for letter in book.letters]
    assert poison.storefront is not None
    assert letter.record_id == poison.storefront.event_id
    assert any("version: Field required" in reason for reason in letter.reasons)
    assert letter.redrive is not None
    assert letter.redrive["signal"]["dedupe_key"] == poison.dedupe_key
    assert "failures" not in letter.redrive["signal"]  # a re-drive starts afresh
    assert stats.dead_lettered == 1
    assert stats.delivered == 5


async def test_a_dependency_down_for_every_batch_parks_nothing(client: Client) -> None:
    mocks = MockActivities()
    outage_deliveries = 4  # more than a signal fails before it is parked

    def commercetools_down(batch: list[JourneySignal], interrupted: bool) -> DeliveryOutcome:
        if len(deliverer.calls) <= 3 * outage_deliveries:  # 3 attempts a delivery
            raise CommercetoolsUnavailable(503, "Service Unavailable", [])
        return sent(batch, interrupted)

    deliverer = ScriptedDeliverer(commercetools_down)
    signals = [view(n) for n in range(6)]
    # (back-off between failed deliveries 0.1, 0.2, 0.4 ... s rather than 1, 2, 4 ... s)
    async with shard(client, mocks, deliverer=deliverer, backoff_unit_seconds=0.05) as (handle, _):
        # Given commercetools down for longer than a poison signal is retried
        await send(handle, *signals)
        # When it is back
        await eventually(lambda: deliverer.delivered_keys(), within=90)
        stats = await handle.query(JourneyShardWorkflow.stats)
    # Then every signal was retried with its whole batch and delivered; nothing was parked
    assert stats.failed_deliveries == outage_deliveries
    assert {len(c.keys) for c in deliverer.calls} == {6}
    assert deliverer.delivered_keys() == [s.dedupe_key for s in signals]
    assert stats.dead_lettered == 0
    assert mocks.finished == []


async def test_garbage_windows_are_dead_lettered_and_the_shard_goes_on(client: Client) -> None:
    mocks = MockActivities()
    good = view(1)
    nobody = {  # readable, but names no customer, visitor or email
        "dedupe_key": "message:nobody",
        "kind": "customer",
        "type": "CustomerCreated",
        "occurred_at": "2026-12-01T12:00:00Z",
        "identity": {},
    }
    not_json = b"[{not json" + b"x" * UNREADABLE_KEPT_BYTES
    garbage: list[tuple[str, list[Any]]] = [
        ("deliver", [RawValue(Payload(metadata={"encoding": b"json/plain"}, data=not_json))]),
        ("deliver", [RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b"[" * 5_000))]),
        ("deliver", [None]),
        ("deliver", [42]),
        ("deliver", ["a string"]),
        ("deliver", [{"dedupe_key": "event:not-in-an-array"}]),
        ("deliver", [[nobody]]),
        ("deliver", []),  # no window: nothing to park
        ("deliver", [[], 5]),  # two windows: an empty one, and 5
        ("deliver_journeys", [[good.model_dump(mode="json")]]),  # not the shard's signal
    ]
    async with shard(client, mocks) as (handle, _):
        # Given windows that are not JSON arrays of signals, hold a signal of nobody, or
        # come in signals the shard does not expect
        for name, args in garbage:
            await handle.signal(name, args=args)
        # When a good one follows
        await send(handle, good)
        # Then it is delivered, and each of the others is parked with its reason
        await eventually(lambda: mocks.delivered_keys() == [good.dedupe_key])
        await eventually(lambda: len([lt for b in mocks.finished for lt in b.letters]) == 9)
        stats = await handle.query(JourneyShardWorkflow.stats)
    letters = [letter for book in mocks.finished for letter in book.letters]
    assert all(letter.reasons for letter in letters)
    assert {"event:not-in-an-array", "message:nobody"} <= {letter.record_id for letter in letters}
    # And what is kept of a window that is not JSON is bounded
    assert letters[0].redrive == {"signal": {"value": not_json[:UNREADABLE_KEPT_BYTES].decode()}}
    assert (stats.received, stats.dead_lettered) == (10, 9)
