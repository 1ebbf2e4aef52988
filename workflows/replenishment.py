"""ReplenishmentWorkflow: one per customer with armed replenishment timers.

It holds that customer's SKU timers (ct_insider/replenishment/state.py) and waits on one
durable timer, to the earliest due date. A purchase arrives as a signal (signal-with-start
from the order paths); it restarts the timer only when it makes the earliest due date
earlier. When the timer fires, every reminder due goes out in one activity (exactly once:
reminders.py), and the timer moves to the next due date. The run ends when nothing is
armed any more (all sent, disarmed, or cancelled by an operator), and continues as new
before its history grows long.

Cost per purchase of an open customer: 1 signal; per new customer: 1 signal-with-start;
per reminder moment: 1 timer + 1 activity (see docs/operations.md for the counted events).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from ct_insider.replenishment.contract import (
        CHANGES_SIGNAL,
        SEND_ACTIVITY,
        WORKFLOW_TYPE,
        ReplenishmentInput,
        ReplenishmentResult,
        SendReminders,
    )
    from ct_insider.replenishment.model import TimerChanges
    from ct_insider.replenishment.reminders import ReminderOutcome
    from ct_insider.replenishment.state import CustomerTimers
    from ct_insider.search_attributes import OUTCOME, RUN_KIND, TIMER_DUE_AT, TIMER_KIND
    from ct_insider.timers.kinds import CANCEL_SIGNAL, TIMERS_QUERY, ArmedTimer, CancelTimers

SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)


@workflow.defn(name=WORKFLOW_TYPE)
class ReplenishmentWorkflow:
    @workflow.init
    def __init__(self, params: ReplenishmentInput) -> None:
        self._params = params
        self._timers = params.timers or CustomerTimers(customer_key=params.customer_key)
        self._cancelled: CancelTimers | None = None
        self._wake = False  # the running timer must be replaced (an earlier due date)
        self._timer_due: datetime | None = None  # when the running timer fires
        self._sent = 0
        self._refused = 0

    @workflow.signal(name=CHANGES_SIGNAL)
    def changes(self, batch: TimerChanges) -> None:
        for change in batch.changes:
            self._timers.apply(change, self._params.day_seconds, self._params.max_skus)
        earliest = self._timers.earliest_due()
        if earliest is None or self._timer_due is None or earliest < self._timer_due:
            self._wake = True
        elif self._history_long():
            self._wake = True  # signals alone grow the history: continue as new now

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self, request: CancelTimers) -> None:
        self._cancelled = request

    @workflow.query(name=TIMERS_QUERY)
    def timers(self) -> list[ArmedTimer]:
        return [] if self._cancelled else self._timers.armed()

    @workflow.run
    async def run(self, params: ReplenishmentInput) -> ReplenishmentResult:
        # The starter sets the kind (and continue-as-new carries it): no event for it here.
        if workflow.info().typed_search_attributes.get(TIMER_KIND) is None:
            workflow.upsert_search_attributes(
                [TIMER_KIND.value_set("replenishment"), RUN_KIND.value_set("replenishment")]
            )
        shown_due = workflow.info().typed_search_attributes.get(TIMER_DUE_AT)
        while self._cancelled is None:
            earliest = self._timers.earliest_due()
            if earliest is None:
                break  # nothing armed: a later purchase starts a new run
            if earliest != shown_due:
                workflow.upsert_search_attributes([TIMER_DUE_AT.value_set(earliest)])
                shown_due = earliest
            if self._history_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(params.model_copy(update={"timers": self._timers}))
            now = workflow.now()
            if earliest <= now:
                await self._send_due(now)
                continue
            self._wake, self._timer_due = False, earliest
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._wake or self._cancelled is not None, timeout=earliest - now
                )
            self._timer_due = None
        await workflow.wait_condition(workflow.all_handlers_finished)
        ended = [OUTCOME.value_set("completed")]
        workflow.upsert_search_attributes(
            [TIMER_DUE_AT.value_unset(), *ended] if shown_due is not None else ended
        )
        if self._cancelled is not None:
            return self._result(f"cancelled: {self._cancelled.reason}")
        return self._result("nothing armed")

    async def _send_due(self, now: datetime) -> None:
        due = self._timers.due(now)
        if not due:
            return
        identifiers = self._timers.identifiers or due[-1].purchase.identifiers
        outcome: ReminderOutcome = await workflow.execute_activity(
            SEND_ACTIVITY,
            SendReminders(
                customer_key=self._params.customer_key, identifiers=identifiers, timers=due
            ),
            result_type=ReminderOutcome,
            start_to_close_timeout=timedelta(seconds=self._params.send_timeout_seconds),
            retry_policy=SEND_RETRY,
        )
        self._timers.mark_sent(due)
        self._sent += len(outcome.sent) + len(outcome.found)
        self._refused += len(outcome.refused)

    def _history_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._params.history_limit
        )

    def _result(self, ended: str) -> ReplenishmentResult:
        return ReplenishmentResult(ended=ended, sent=self._sent, refused=self._refused)
