"""CartWorkflow: one per commercetools cart that needs following (`cart-<cart id>`, the
timer contract of ct_insider/timers/kinds.py), started by the bridge's signal-with-start.

- Cart events: a burst of notifications about the cart (`cart_changed` signals) waits
  `coalesce_seconds`, then one read of the cart; its lines are compared with what Insider
  was told (ct_insider/carts/events.py) and the difference goes to the journey shards,
  which deliver it exactly once, batched with everyone else's events.
- Cart recovery: while the cart is Active with items and names someone, a reminder is due
  `reminder_delays[n]` after its last change. One timer runs at a time and a change does
  not cancel it: the change only moves the due moment, and a timer that fires early sleeps
  the remainder (a timer is cancelled only when the due moment moves earlier). When it is
  due, the cart is read again (and whether an order was made from it); still Active, not
  ordered, unchanged, with items: one `cart_abandoned` event, its id naming the change that
  armed it and its number, so it is sent once whatever repeats.
- Ends when there is nothing left to follow: the cart ordered (an order signal from the
  bridge, or its state), merged, deleted, emptied (after its `cart_cleared`), naming
  nobody, unreadable, cancelled (CANCEL_SIGNAL), or unchanged `forget_after_seconds`.
  Continues as new after `max_steps_per_run` steps, carrying what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from functools import partial
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.cart import (
        CartActivities,
        CartRead,
        HandOffInput,
        ReadCartInput,
        RemindInput,
    )
    from activities.errors import NON_RETRYABLE_TYPES
    from ct_insider.carts.events import SentCart, observe
    from ct_insider.journeys.signals import JourneySignal
    from ct_insider.search_attributes import RUN_KIND, TIMER_DUE_AT, TIMER_KIND
    from ct_insider.timers.kinds import (
        CANCEL_SIGNAL,
        TIMERS_QUERY,
        ArmedTimer,
        CancelTimers,
        workflow_id,
    )

CART_SIGNAL = "cart_changed"

# What a signal tells the cart's workflow. "changed": read the cart (a change notification,
# a state message); "ordered": an order was made from it; "deleted": it is gone;
# "checkout": the storefront started checking it out (reminders wait for the next change).
Nudge = Literal["changed", "ordered", "deleted", "checkout"]
# Why a cart's workflow ended (its result).
Ending = Literal[
    "ordered",
    "merged",
    "deleted",
    "emptied",
    "empty",
    "no identifier",
    "unreadable",
    "forgotten",
    "cancelled",
]
DAY = 86_400.0
# Endings after which the cart may have changed again (nudges arrived while the step ran):
# the workflow then continues as new to read it, rather than end and drop those signals.
_RESUMABLE = frozenset({"emptied", "empty", "no identifier"})


def cart_workflow_id(cart_id: str) -> str:
    return workflow_id("cart", cart_id)


class CartNudge(BaseModel):
    what: Nudge
    source: str = ""  # the notification or event it came from (for the history's reader)


class CartStats(BaseModel):
    """Counted over the cart's life (carried across continue-as-new)."""

    signals: int = 0  # nudges received
    reads: int = 0  # commercetools reads (one per burst, one per due reminder)
    bursts: int = 0
    events: int = 0  # cart events handed to the journey shards (reminders included)
    reminders: int = 0
    no_identifier: int = 0  # reads of the cart that named nobody (nothing sent)
    runs: int = 1


class CartCarried(BaseModel):
    """What a run hands the next one (continue-as-new)."""

    sent: SentCart = Field(default_factory=SentCart)
    version: int = 0  # the cart version last read
    last_change_at: datetime | None = None
    armed_version: int | None = None  # the change reminders count from (None: disarmed)
    reminders_sent: int = 0
    disarmed_by: str | None = None  # "checkout" or "frozen"
    pending: list[Nudge] = Field(default_factory=list)
    stats: CartStats = Field(default_factory=CartStats)


class CartInput(BaseModel):
    cart_id: str
    # Seconds from the last change to each reminder (cumulative: CART_REMINDER_DELAYS).
    reminder_delays: list[float] = Field(default_factory=lambda: [3600.0], max_length=5)
    coalesce_seconds: float = Field(default=2.0, ge=0)
    forget_after_seconds: float = Field(default=90 * DAY, gt=0)
    max_steps_per_run: int = Field(default=50, ge=1)
    carried: CartCarried | None = None


class CartResult(BaseModel):
    ending: Ending
    reason: str = ""
    stats: CartStats


# Reads (and a due reminder, whose event id is fixed before it reads) are local activities:
# they run inside the workflow task that needs them, a marker event each instead of an
# activity's three events and two more workflow tasks (billed as actions all the same). A
# workflow task that is lost after one ran simply runs it again: a read sends nothing, and a
# reminder handed off twice has one id. Handing off the events of a change is a regular
# activity (see _hand_off).
_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


@workflow.defn
class CartWorkflow:
    @workflow.init
    def __init__(self, params: CartInput) -> None:
        carried = params.carried or CartCarried()
        self._params = params
        self._state = carried
        self._pending: set[Nudge] = set(carried.pending)
        self._cancel: CancelTimers | None = None
        self._wake = False
        self._published_due: datetime | None = None
        self._stepping = False

    # -- signals and queries ---------------------------------------------------------

    @workflow.signal(name=CART_SIGNAL)
    def nudged(self, nudges: list[CartNudge]) -> None:
        # A set: a flood of notifications costs the same memory as one.
        self._pending.update(nudge.what for nudge in nudges)
        self._state.stats.signals += len(nudges)

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self, request: CancelTimers) -> None:
        self._cancel = request

    @workflow.query(name=TIMERS_QUERY)
    def timers(self) -> list[ArmedTimer]:
        due = self._reminder_due()
        if due is None:
            return []
        number = self._state.reminders_sent + 1
        return [
            ArmedTimer(
                kind="cart",
                key=self._params.cart_id,
                due_at=due,
                what=f"reminder {number} of {len(self._params.reminder_delays)}",
            )
        ]

    @workflow.query
    def stats(self) -> CartStats:
        return self._state.stats

    @workflow.query
    def busy(self) -> bool:
        """Whether nudges wait or a step (a burst, a reminder) is under way."""
        return bool(self._pending) or self._stepping

    # -- when to wake ----------------------------------------------------------------

    def _reminder_due(self) -> datetime | None:
        state, delays = self._state, self._params.reminder_delays
        if (
            state.armed_version is None
            or state.last_change_at is None
            or state.reminders_sent >= len(delays)
        ):
            return None
        return state.last_change_at + timedelta(seconds=delays[state.reminders_sent])

    def _wake_at(self) -> datetime | None:
        """The next reminder, else the moment the cart is forgotten."""
        due = self._reminder_due()
        if due is not None:
            return due
        if self._state.last_change_at is None:
            return None
        return self._state.last_change_at + timedelta(seconds=self._params.forget_after_seconds)

    async def _clock(self) -> None:
        """The one timer: sleeps until the wake moment; a moment moved later costs nothing
        (it sleeps the remainder when it fires), one moved earlier cancels and re-arms."""
        while True:
            target = self._wake_at()
            if target is None:
                await workflow.wait_condition(lambda: self._wake_at() is not None)
                continue
            remaining = (target - workflow.now()).total_seconds()
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        partial(self._moved_earlier, target), timeout=remaining
                    )
                continue
            self._wake = True
            await workflow.wait_condition(lambda: not self._wake)

    def _moved_earlier(self, target: datetime) -> bool:
        at = self._wake_at()
        return at is not None and at < target

    def _publish_due(self) -> None:
        """CtTimerDueAt follows the next reminder (unset while none is armed)."""
        due = self._reminder_due()
        if due == self._published_due:
            return
        self._published_due = due
        workflow.upsert_search_attributes(
            [TIMER_DUE_AT.value_set(due) if due is not None else TIMER_DUE_AT.value_unset()]
        )

    # -- the run ---------------------------------------------------------------------

    @workflow.run
    async def run(self, params: CartInput) -> CartResult:
        attributes = workflow.info().typed_search_attributes
        if attributes.get(TIMER_KIND) is None:  # (the bridge sets them when it starts us)
            workflow.upsert_search_attributes(
                [TIMER_KIND.value_set("cart"), RUN_KIND.value_set("cart")]
            )
        self._published_due = attributes.get(TIMER_DUE_AT)
        if params.carried is not None:
            self._state.stats.runs += 1
        # (Left running when the run ends: cancelling it would only add a TimerCanceled.)
        self._clock_task = asyncio.create_task(self._clock())
        for _ in range(params.max_steps_per_run):
            await workflow.wait_condition(
                lambda: bool(self._pending) or self._wake or self._cancel is not None
            )
            self._stepping = True
            ending = await self._step()
            self._stepping = False
            if ending is not None and not (self._pending and ending[0] in _RESUMABLE):
                return self._end(*ending)
            if ending is not None:
                break  # a change came meanwhile: the next run reads it (nothing is lost)
            self._publish_due()
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._state.pending = sorted(self._pending)
        workflow.continue_as_new(params.model_copy(update={"carried": self._state}))

    def _end(self, ending: Ending, reason: str = "") -> CartResult:
        if ending == "cancelled":
            workflow.logger.info("cart timers cancelled: %s", reason)
        return CartResult(ending=ending, reason=reason, stats=self._state.stats)

    async def _step(self) -> tuple[Ending, str] | None:
        if self._cancel is not None:
            return "cancelled", self._cancel.reason
        if self._pending:
            return await self._nudges()
        try:
            return await self._woke()
        finally:
            self._wake = False  # (the clock waits for this before it looks again)

    async def _nudges(self) -> tuple[Ending, str] | None:
        if "changed" in self._pending and self._params.coalesce_seconds > 0:
            # The rest of the burst arrives meanwhile: one read for all of it.
            await workflow.sleep(self._params.coalesce_seconds)
        nudges, self._pending = self._pending, set()
        if "deleted" in nudges:
            return "deleted", "the cart was deleted"
        if "ordered" in nudges:
            return "ordered", "an order was made from the cart"
        if "checkout" in nudges:
            self._disarm("checkout")
        if "changed" not in nudges:
            return None
        self._state.stats.bursts += 1
        return await self._apply(await self._read())

    async def _read(self) -> CartRead:
        self._state.stats.reads += 1
        return await workflow.execute_local_activity_method(
            CartActivities.read_cart,
            ReadCartInput(cart_id=self._params.cart_id),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )

    async def _hand_off(self, signals: list[JourneySignal]) -> None:
        # A regular activity: its input - the events this read called for - is in the history
        # before anything is sent, so a lost workflow task never re-decides on a newer read
        # (its events would have other ids than the ones already sent).
        await workflow.execute_activity_method(
            CartActivities.hand_off_cart_events,
            HandOffInput(cart_id=self._params.cart_id, signals=signals),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )
        self._state.stats.events += len(signals)

    def _disarm(self, why: str) -> None:
        self._state.armed_version = None
        self._state.disarmed_by = why

    def _arm(self, version: int) -> None:
        state = self._state
        state.last_change_at = workflow.now()
        state.armed_version = version
        state.reminders_sent = 0
        state.disarmed_by = None

    async def _apply(self, read: CartRead) -> tuple[Ending, str] | None:
        """Bring Insider's view of the cart up to this read; whether the cart's story ends."""
        state = self._state
        if read.refused is not None:
            return "unreadable", read.refused
        if read.gone or read.snapshot is None:
            return "deleted", "the cart no longer exists"
        snap = read.snapshot
        if snap.state == "Ordered" or read.ordered:
            return "ordered", "the cart was ordered"
        if snap.state == "Merged":
            return "merged", "merged into the customer's cart at sign-in"
        observation = observe(state.sent, snap)
        if observation.no_identifier:
            state.stats.no_identifier += 1
            if state.sent.owner is None:
                workflow.logger.info("cart names no customer, visitor or email: not followed")
                return "no identifier", "the cart names no customer, visitor or email"
        if observation.signals:
            await self._hand_off(observation.signals)
        state.sent = observation.sent
        changed = snap.version > state.version
        state.version = max(state.version, snap.version)
        if not snap.lines:
            return ("emptied" if observation.lines_changed else "empty"), "no items"
        if snap.state == "Frozen":
            self._disarm("frozen")
        elif observation.lines_changed or (changed and state.disarmed_by != "checkout"):
            self._arm(snap.version)  # any change of an Active cart is activity
        return None

    async def _woke(self) -> tuple[Ending, str] | None:
        state = self._state
        due = self._reminder_due()
        if due is None:
            at = self._wake_at()
            if at is not None and at <= workflow.now():
                return "forgotten", "unchanged for longer than CART_FORGET_AFTER_DAYS"
            return None
        if due > workflow.now():
            return None  # moved later since the clock woke: it sleeps the remainder
        armed, number = state.armed_version, state.reminders_sent + 1
        assert armed is not None
        state.stats.reads += 1
        reminding = await workflow.execute_local_activity_method(
            CartActivities.remind_cart,
            RemindInput(
                cart_id=self._params.cart_id,
                version=state.version,
                armed_version=armed,
                number=number,
                due_at=due,
            ),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )
        if reminding.reminded:
            state.reminders_sent = number
            state.stats.reminders += 1
            state.stats.events += 1
        ending = await self._apply(reminding.read)  # a change it found re-arms
        if ending is not None:
            return ending
        at = self._wake_at()
        if at is not None and at <= workflow.now() and self._reminder_due() is not None:
            self._disarm("not remindable")  # never wake in a loop for the same moment
        return None
