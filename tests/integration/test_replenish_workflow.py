"""ReplenishmentWorkflow on the dev server with its send activity mocked, started through the
real port adapter (signal-with-start) and a test-double admission.

Periods are in "days" of one second (`day_seconds=1`). Where a timer must not fire during
a test, its period is 1,000 s: no machine is that slow.

`UPDATE_HISTORIES=1` writes the histories of these runs to
tests/fixtures/replenishment_histories/, which tests/unit/test_replenish_replay.py replays.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from activities.replenishment import TemporalReplenishmentTimers
from ct_insider.codec import decode_in_place
from ct_insider.insider.models import Identifiers
from ct_insider.replenishment.contract import (
    HISTORY_LIMIT,
    SEND_ACTIVITY,
    ReplenishmentResult,
    SendReminders,
)
from ct_insider.replenishment.model import ArmTimer, DisarmTimer, TimerChange
from ct_insider.replenishment.port import by_customer
from ct_insider.replenishment.reminders import ReminderOutcome
from ct_insider.search_attributes import TIMER_DUE_AT, TIMER_KIND
from ct_insider.timers.kinds import (
    CANCEL_SIGNAL,
    TIMERS_QUERY,
    ArmedTimer,
    CancelTimers,
    TimerKind,
    workflow_id,
)
from tests.conftest import eventually
from workflows.replenishment import ReplenishmentWorkflow

pytestmark = pytest.mark.integration

HISTORIES = Path(__file__).parent.parent / "fixtures" / "replenishment_histories"
NEVER = 1_000.0  # a period (seconds, here) that cannot run out during a test
TASK = [
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
]


@dataclass
class MockSender:
    calls: list[SendReminders] = field(default_factory=list)

    @activity.defn(name=SEND_ACTIVITY)
    async def send(self, params: SendReminders) -> ReminderOutcome:
        self.calls.append(params)
        return ReminderOutcome(sent=[t.purchase.sku for t in params.timers])

    def sent(self) -> list[tuple[str, str]]:
        return [(t.purchase.sku, t.purchase.order_id) for c in self.calls for t in c.timers]


@dataclass
class Admission:
    """The cap's test double: admits until `admits` is False, counting what it was asked."""

    admits: bool = True
    asked: list[TimerKind] = field(default_factory=list)

    async def admits_new(self, kind: TimerKind) -> bool:
        self.asked.append(kind)
        return self.admits


@dataclass
class Rig:
    client: Client
    timers: TemporalReplenishmentTimers
    sender: MockSender
    admission: Admission
    customer: str

    def handle(self) -> WorkflowHandle[ReplenishmentWorkflow, ReplenishmentResult]:
        return self.client.get_workflow_handle_for(
            ReplenishmentWorkflow.run, workflow_id("replenishment", self.customer)
        )

    async def send(self, *changes: TimerChange) -> None:
        """As the order paths hand delivered changes over (Replenishment.delivered)."""
        groups, _ = by_customer(changes, datetime.now(UTC), day_seconds=1.0)
        await self.timers.apply(groups)


@asynccontextmanager
async def rig(client: Client, *, history_limit: int | None = None) -> AsyncIterator[Rig]:
    task_queue = f"replenish-{uuid.uuid4()}"
    sender, admission = MockSender(), Admission()
    timers = TemporalReplenishmentTimers(
        client,
        task_queue,
        admission,
        day_seconds=1.0,
        max_skus=100,
        history_limit=history_limit or HISTORY_LIMIT,
    )
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[ReplenishmentWorkflow],
        activities=[sender.send],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        yield Rig(client, timers, sender, admission, f"c-{uuid.uuid4().hex[:12]}")


def arm(
    customer: str, order: str, period: float, sku: str = "SKU-A", at: datetime | None = None
) -> ArmTimer:
    return ArmTimer(
        customer_key=customer,
        identifiers=Identifiers(uuid=customer),
        sku=sku,
        order_id=order,
        line_id=f"{order}-line",
        name="Coffee",
        quantity=1,
        purchased_at=at or datetime.now(UTC),
        period_days=period,
        period_source="attribute",
    )


E = EventType
REMINDED_ONCE = [
    E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    *TASK,
    E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,  # CtTimerDueAt
    E.EVENT_TYPE_TIMER_STARTED,
    E.EVENT_TYPE_TIMER_FIRED,
    *TASK,
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    E.EVENT_TYPE_ACTIVITY_TASK_STARTED,
    E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    *TASK,
    E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,  # CtTimerDueAt unset, CtOutcome
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
]


async def record_history(client: Client, handle: WorkflowHandle[Any, Any]) -> None:
    if not os.environ.get("UPDATE_HISTORIES"):
        return
    test = os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].split(" ")[0]
    history = await handle.fetch_history()
    codec = client.data_converter.payload_codec
    for event in history.events:
        if codec is not None:
            await decode_in_place(event, codec)
    HISTORIES.mkdir(parents=True, exist_ok=True)
    (HISTORIES / f"{test}.json").write_text(history.to_json())


async def test_replenish_workflow_reminds_once_after_the_period(client: Client) -> None:
    async with rig(client) as r:
        # Given a purchase of SKU-A with a 2 s period
        await r.send(arm(r.customer, "o-1", 2))
        # Then while it waits, the timer is visible: query and search attributes
        armed: list[ArmedTimer] = await eventually(
            lambda: r.handle().query(TIMERS_QUERY, result_type=list[ArmedTimer])
        )
        assert [(a.kind, a.key) for a in armed] == [("replenishment", f"{r.customer}/SKU-A")]
        described = await r.handle().describe()
        assert described.typed_search_attributes.get(TIMER_KIND) == "replenishment"
        assert described.typed_search_attributes.get(TIMER_DUE_AT) is not None
        # When the period runs out, then one reminder was sent and the run ends
        result = await r.handle().result()
        await record_history(client, r.handle())
    assert r.sender.sent() == [("SKU-A", "o-1")]
    assert r.sender.calls[0].identifiers == Identifiers(uuid=r.customer)
    assert result == ReplenishmentResult(ended="nothing armed", sent=1)
    # Cost of a customer's one reminder (docs/operations.md): 19 history events; 3 actions
    # (the signal-with-start, the timer, the activity)
    assert [e.event_type for e in (await r.handle().fetch_history()).events] == REMINDED_ONCE
    assert (r.timers.starts, r.timers.signals, r.admission.asked) == (1, 0, ["replenishment"])
    described = await r.handle().describe()
    assert described.typed_search_attributes.get(TIMER_DUE_AT) is None


async def test_replenish_workflow_moves_the_timer_to_a_repeat_purchase(client: Client) -> None:
    async with rig(client) as r:
        # Given a purchase whose period cannot run out during the test
        first = datetime.now(UTC)
        await r.send(arm(r.customer, "o-1", NEVER, at=first))
        # When the customer buys the SKU again (a 2 s period now)
        await r.send(arm(r.customer, "o-2", 2, at=first + timedelta(milliseconds=1)))
        result = await r.handle().result()
        await record_history(client, r.handle())
        history = await r.handle().fetch_history()
    # Then the reminder is about the repeat purchase only, and went out once
    assert r.sender.sent() == [("SKU-A", "o-2")]
    assert result.sent == 1
    assert (r.timers.starts, r.timers.signals) == (1, 1)
    # And the run replays on today's code
    replay = await Replayer(
        workflows=[ReplenishmentWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
        data_converter=client.data_converter,
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert replay.replay_failure is None


async def test_replenish_workflow_redeliveries_arm_once(client: Client) -> None:
    async with rig(client) as r:
        # Given the same purchase handed over three times (redeliveries, replays)
        purchase = arm(r.customer, "o-1", 2)
        for _ in range(3):
            await r.send(purchase)
        result = await r.handle().result()
        # And once more after its reminder went out (the run has ended)
        await r.send(purchase)
        # Then one workflow started (and was signalled twice), and one reminder went out:
        # the late copy is past due and arms nothing
        assert (r.timers.starts, r.timers.signals) == (1, 2)
        assert r.sender.sent() == [("SKU-A", "o-1")]
        assert result.sent == 1
        # And a new purchase after the run ended starts a new run, which reminds again
        await r.send(arm(r.customer, "o-2", 2))
        await eventually(lambda: r.sender.sent(), until=lambda sent: len(sent) == 2)
        assert await r.handle().result() == ReplenishmentResult(ended="nothing armed", sent=1)
    assert r.timers.starts == 2
    assert r.sender.sent() == [("SKU-A", "o-1"), ("SKU-A", "o-2")]


async def test_replenish_workflow_disarms_on_a_refund_without_sending(client: Client) -> None:
    async with rig(client) as r:
        # Given an armed purchase
        await r.send(arm(r.customer, "o-1", NEVER))
        # When its line is refunded
        await r.send(
            DisarmTimer(
                customer_key=r.customer,
                sku="SKU-A",
                order_id="o-1",
                line_id="o-1-line",
                reason="refund",
            )
        )
        result = await r.handle().result()
        await record_history(client, r.handle())
    # Then the run ends at once, having sent nothing
    assert result == ReplenishmentResult(ended="nothing armed")
    assert r.sender.calls == []


async def test_replenish_a_disarm_alone_starts_no_workflow(client: Client) -> None:
    async with rig(client) as r:
        # When a refund reaches a customer with no open timers
        await r.send(
            DisarmTimer(
                customer_key=r.customer, sku="SKU-A", order_id="o-1", line_id="l", reason="refund"
            )
        )
        # Then nothing was started nor asked of the admission
        with pytest.raises(RPCError):
            await r.handle().describe()
    assert (r.timers.starts, r.admission.asked) == (0, [])


async def test_replenish_workflow_start_refused_at_the_cap(client: Client) -> None:
    async with rig(client) as r:
        # Given the admission says the cap is reached
        r.admission.admits = False
        # When a new customer's purchase arrives
        await r.send(arm(r.customer, "o-1", 2))
        # Then no workflow started, and the refusal is counted
        with pytest.raises(RPCError):
            await r.handle().describe()
    assert (r.timers.starts, r.timers.refused, r.admission.asked) == (0, 1, ["replenishment"])


async def test_replenish_workflow_cancelled_by_an_operator_sends_nothing(client: Client) -> None:
    async with rig(client) as r:
        await r.send(arm(r.customer, "o-1", NEVER), arm(r.customer, "o-2", NEVER, sku="SKU-B"))
        armed = await eventually(
            lambda: r.handle().query(TIMERS_QUERY, result_type=list[ArmedTimer]),
            until=lambda found: len(found) == 2,
        )
        assert {a.key for a in armed} == {f"{r.customer}/SKU-A", f"{r.customer}/SKU-B"}
        # When an operator cancels its timers
        await r.handle().signal(CANCEL_SIGNAL, CancelTimers(reason="cancelled by an operator"))
        result = await r.handle().result()
        await record_history(client, r.handle())
    # Then it ends saying why, having sent nothing
    assert result.ended == "cancelled: cancelled by an operator"
    assert r.sender.calls == []


async def test_replenish_workflow_continues_as_new_and_keeps_its_timers(client: Client) -> None:
    async with rig(client, history_limit=50) as r:
        # Given 30 SKUs bought one by one (each due later than the last: the running timer
        # stays, only the history grows), far more history than a run of 50 events holds
        now = datetime.now(UTC)
        first_run = ""
        for n in range(30):
            await r.send(arm(r.customer, f"o-{n}", NEVER + n, sku=f"SKU-{n:02d}", at=now))
            first_run = first_run or (await r.handle().describe()).run_id

        # Then the run continued as new on its history alone (no timer woke it)
        async def current_run() -> str | None:
            return (await r.handle().describe()).run_id

        await eventually(current_run, until=lambda run: run != first_run)
        # When one more SKU falls due in 2 s
        await r.send(arm(r.customer, "o-due", 2, sku="SKU-DUE"))
        # Then its reminder went out once, and the other 30 timers are still armed
        await eventually(lambda: r.sender.sent(), until=lambda sent: sent == [("SKU-DUE", "o-due")])
        armed = await r.handle().query(TIMERS_QUERY, result_type=list[ArmedTimer])
        assert len(armed) == 30
        first_history = await client.get_workflow_handle(
            r.handle().id, run_id=first_run
        ).fetch_history()
        assert first_history.events[-1].HasField(
            "workflow_execution_continued_as_new_event_attributes"
        ), "the first run never continued as new"
        await r.handle().signal(CANCEL_SIGNAL, CancelTimers(reason="test over"))
        await r.handle().result()
    assert r.sender.sent() == [("SKU-DUE", "o-due")]


async def test_replenish_workflow_a_later_purchase_costs_a_signal_and_four_events(
    client: Client,
) -> None:
    async with rig(client) as r:
        # Given a customer's first purchase, armed
        await r.send(arm(r.customer, "o-0", NEVER, sku="SKU-0"))
        await eventually(lambda: r.handle().query(TIMERS_QUERY, result_type=list[ArmedTimer]))
        before = len((await r.handle().fetch_history()).events)
        # When 5 more purchases of other SKUs arrive, each due later than the first
        for n in range(1, 6):
            await r.send(arm(r.customer, f"o-{n}", NEVER + n, sku=f"SKU-{n}"))
        armed = await eventually(
            lambda: r.handle().query(TIMERS_QUERY, result_type=list[ArmedTimer]),
            until=lambda found: len(found) == 6,
        )
        history = (await r.handle().fetch_history()).events
        await r.handle().signal(CANCEL_SIGNAL, CancelTimers(reason="test over"))
        await r.handle().result()
    # Then each cost one signal (one action) and at most four history events (its signal
    # and a workflow task, which signals arriving together share), and the one timer to
    # the earliest due date kept running (no new timer, no search attribute update)
    assert len(armed) == 6
    assert (r.timers.starts, r.timers.signals) == (1, 5)
    added = [e.event_type for e in history[before:]]
    assert added.count(E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 5
    assert set(added) == {E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, *TASK}
    assert len(added) <= 5 * 4
