"""CustomerJourneyWorkflow: one entity workflow per customer identity, fed by signal-with-start.

It accepts that customer's signals (storefront events, commercetools messages), drops
duplicates and stale state changes, keeps them in order, and flushes them to Insider in
small batches: the first signal of a batch waits at most `flush_seconds`.

Dedupe rules (documented in the README):
- a signal whose key (event id, message id, resource@version) was seen is a duplicate;
  the last `seen_capacity` keys survive continue-as-new;
- a customer state change (any Customer* message but CustomerCreated, EmailChanged and
  Deleted) older than or as old as one already queued or applied is stale: the delivery
  reads the customer's current state anyway;
- order events are checked against the delivery ledger, shared with delta sync and
  backfill, so an order seen by the bridge and by a sync makes one event;
- a signal older than the quiet period (a redelivery after the journey rested and lost its
  keys) is delivered only after checking which of its events Insider already holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.errors import NON_RETRYABLE_TYPES
    from activities.journey import (
        DELETION_TYPES,
        JourneyActivities,
        JourneyDelivery,
        JourneyOutcome,
    )
    from ct_insider.journeys.signals import JourneySignal, Market

# Customer messages that do more than say "the customer changed" (which the delivery answers
# by re-reading the customer): these are never dropped as stale.
EVENTFUL_CUSTOMER_TYPES = frozenset({"CustomerCreated", "CustomerEmailChanged"}) | DELETION_TYPES


class JourneyStats(BaseModel):
    received: int = 0
    duplicates: int = 0
    stale: int = 0
    delivered: int = 0
    events: int = 0  # sent by this run's deliveries
    # Found in Insider before sending: a redelivery, or a delivery repeated because its
    # first execution's result never reached history (e.g. a workflow task that Temporal
    # refused because a signal arrived while it was continuing-as-new).
    already_in_insider: int = 0
    flushes: int = 0

    def add(self, outcome: JourneyOutcome, signals: int) -> None:
        self.delivered += signals
        self.events += outcome.events
        self.already_in_insider += outcome.already_in_insider
        self.flushes += 1


class JourneyState(BaseModel):
    seen: list[str] = Field(default_factory=list)  # oldest first
    versions: dict[str, int] = Field(default_factory=dict)
    market: Market = Field(default_factory=Market)
    pending: list[JourneySignal] = Field(default_factory=list)
    stats: JourneyStats = Field(default_factory=JourneyStats)


class JourneyInput(BaseModel):
    key: str
    # 0: flush as soon as the previous flush is done (signals that arrive meanwhile form the
    # next batch, so no signal waits longer than one delivery). >0: also gather for that
    # long, which lets shuffled deliveries be put back in order within the window.
    flush_seconds: float = Field(default=0.0, ge=0)
    max_batch: int = Field(default=100, ge=1)
    # An idle journey completes; a later signal starts a new run (dedupe keys start over).
    idle_seconds: float = Field(default=24 * 3600, gt=0)
    seen_capacity: int = Field(default=5_000, ge=10)
    max_signals_per_run: int = Field(default=2_000, ge=1)
    state: JourneyState = Field(default_factory=JourneyState)


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def journey_workflow_id(key: str) -> str:
    return f"journey-{key}"


@workflow.defn
class CustomerJourneyWorkflow:
    @workflow.init
    def __init__(self, params: JourneyInput) -> None:
        self._params = params
        self._state = params.state.model_copy(deep=True)
        self._seen = set(self._state.seen)
        self._order: deque[str] = deque(self._state.seen)
        self._signals_this_run = 0
        self._last_signal = workflow.now()
        self._resting = False
        # Built while replaying history = rebuilt after a crash, restart or cache eviction.
        # The delivery a crashed worker was running left no trace in history and will run
        # again: the first one after a rebuild checks Insider before sending.
        self._may_repeat = workflow.unsafe.is_replaying()

    @workflow.signal
    def deliver(self, signals: list[JourneySignal]) -> None:
        for signal in signals:
            self._accept(signal)

    def _accept(self, signal: JourneySignal) -> None:
        state = self._state
        self._last_signal = workflow.now()
        state.stats.received += 1
        self._signals_this_run += 1
        if signal.dedupe_key in self._seen:
            state.stats.duplicates += 1
            return
        self._remember(signal.dedupe_key)
        if (
            signal.kind == "customer"
            and signal.type not in EVENTFUL_CUSTOMER_TYPES
            and signal.resource_id
            and signal.resource_version is not None
        ):
            if signal.resource_version <= state.versions.get(signal.resource_id, -1):
                state.stats.stale += 1
                return
            state.versions[signal.resource_id] = signal.resource_version
        state.pending.append(signal)

    def _remember(self, key: str) -> None:
        self._seen.add(key)
        self._order.append(key)
        while len(self._order) > self._params.seen_capacity:
            self._seen.discard(self._order.popleft())

    @workflow.run
    async def run(self, params: JourneyInput) -> JourneyStats:
        state = self._state
        watch = asyncio.ensure_future(self._watch_idle(params.idle_seconds))
        while True:
            await workflow.wait_condition(lambda: bool(state.pending) or self._resting)
            if not state.pending:
                return state.stats  # quiet for long enough: the journey rests
            if params.flush_seconds:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: len(state.pending) >= params.max_batch,
                        timeout=timedelta(seconds=params.flush_seconds),
                    )
            await self._flush()
            if (
                self._signals_this_run >= params.max_signals_per_run
                or workflow.info().is_continue_as_new_suggested()
            ):
                watch.cancel()
                await workflow.wait_condition(workflow.all_handlers_finished)
                state.seen = list(self._order)
                workflow.continue_as_new(params.model_copy(update={"state": state}))

    async def _watch_idle(self, idle_seconds: float) -> None:
        """One timer per quiet period (not one per signal): it wakes at the earliest moment
        the journey could have been quiet long enough, and sleeps again if it was not."""
        idle = timedelta(seconds=idle_seconds)
        while True:
            remaining = self._last_signal + idle - workflow.now()
            if remaining <= timedelta(0) and not self._state.pending:
                self._resting = True
                return
            await workflow.sleep(max(remaining, timedelta(seconds=1)))

    async def _flush(self) -> None:
        state = self._state
        ordered = sorted(state.pending, key=JourneySignal.order_key)
        batch, state.pending = ordered[: self._params.max_batch], ordered[self._params.max_batch :]
        for signal in batch:
            # Each signal carries the market it happened in; gaps come from what this
            # customer's earlier signals told us (e.g. an order's currency and country).
            state.market = signal.market.filled_from(state.market)
            signal.market = state.market
        # A local activity: delivery runs inside the workflow task, which halves what Temporal
        # stores and dispatches per signal (bench/realtime.py).
        outcome = await workflow.execute_local_activity_method(
            JourneyActivities.deliver,
            JourneyDelivery(
                lane=workflow.info().workflow_id,
                signals=batch,
                may_repeat=self._may_repeat or self._may_be_redelivered(batch),
            ),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=500),
                maximum_interval=timedelta(seconds=30),
                non_retryable_error_types=NON_RETRYABLE_TYPES,
            ),
        )
        self._may_repeat = False
        state.stats.add(outcome, len(batch))

    def _may_be_redelivered(self, batch: list[JourneySignal]) -> bool:
        """A signal that happened longer ago than the quiet period may have been delivered by
        an earlier run of this journey, which has rested since and taken its dedupe keys with
        it: such a batch checks Insider before sending. (A run rests `idle_seconds` after its
        last signal, so an earlier run cannot have seen anything younger.)"""
        cutoff = workflow.now() - timedelta(seconds=self._params.idle_seconds)
        return any(_as_utc(signal.occurred_at) <= cutoff for signal in batch)

    @workflow.query
    def stats(self) -> JourneyStats:
        return self._state.stats
