"""Replenishment over Temporal: arming customers' timer workflows, and sending reminders.

`TemporalReplenishmentTimers` is the `ReplenishmentTimers` port of ct_insider: one signal
per customer with changes (an open workflow takes it); a customer with no open workflow
gets one by signal-with-start - if the `TimerAdmission` admits a new one (at the cap the
start is refused, logged and counted: the purchase is in Insider, only its reminder is
lost). Changes that only disarm never start a workflow.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.bounded import bounded
from ct_insider.insider.errors import InsiderError
from ct_insider.logging import get_logger
from ct_insider.replenishment.contract import (
    CHANGES_SIGNAL,
    HISTORY_LIMIT,
    SEND_ACTIVITY,
    WORKFLOW_TYPE,
    ReplenishmentInput,
    SendReminders,
)
from ct_insider.replenishment.model import ArmTimer, TimerChanges
from ct_insider.replenishment.reminders import ReminderOutcome, ReminderSender
from ct_insider.search_attributes import OUTCOME, RUN_KIND, TIMER_KIND
from ct_insider.timers.kinds import TimerAdmission, workflow_id

log = get_logger(__name__)

# Customers signalled at once by one delivery.
SIGNAL_CONCURRENCY = 16


class TemporalReplenishmentTimers:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        admission: TimerAdmission,
        *,
        day_seconds: float,
        max_skus: int,
        history_limit: int = HISTORY_LIMIT,
        send_timeout_seconds: float = 60.0,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._admission = admission
        self._day_seconds = day_seconds
        self._max_skus = max_skus
        self._history_limit = history_limit
        self._send_timeout = send_timeout_seconds
        self.signals = 0  # signals to open workflows
        self.starts = 0  # signal-with-starts
        self.refused = 0  # starts the admission refused

    async def apply(self, changes: Sequence[TimerChanges]) -> None:
        async with bounded(SIGNAL_CONCURRENCY, [self._apply_one(c) for c in changes]) as done:
            for outcome in done:
                await outcome

    async def _apply_one(self, changes: TimerChanges) -> None:
        wid = workflow_id("replenishment", changes.customer_key)
        handle: WorkflowHandle[object, object] = self._client.get_workflow_handle(wid)
        try:
            await handle.signal(CHANGES_SIGNAL, changes)
            self.signals += 1
            return
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        arms = [c for c in changes.changes if isinstance(c, ArmTimer) and not c.lapsed]
        if not arms:
            return  # nothing to arm, and no open timer to disarm or supersede
        if not await self._admission.admits_new("replenishment"):
            self.refused += 1  # (the cap counts it in ct_insider_timer_starts_refused)
            log.warning(
                "replenishment timer refused: open timer cap reached",
                workflow_id=wid,
                skus=sorted({a.sku for a in arms}),
            )
            return
        # Signal-with-start: two deliveries racing to start one customer's workflow both
        # reach the same run (one starts it, the other signals it).
        await self._client.start_workflow(
            WORKFLOW_TYPE,
            ReplenishmentInput(
                customer_key=changes.customer_key,
                day_seconds=self._day_seconds,
                max_skus=self._max_skus,
                history_limit=self._history_limit,
                send_timeout_seconds=self._send_timeout,
            ),
            id=wid,
            task_queue=self._task_queue,
            start_signal=CHANGES_SIGNAL,
            start_signal_args=[changes],
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(TIMER_KIND, "replenishment"),
                    SearchAttributePair(RUN_KIND, "replenishment"),
                    SearchAttributePair(OUTCOME, "running"),
                ]
            ),
        )
        self.starts += 1


class ReplenishmentActivities:
    def __init__(self, sender: ReminderSender) -> None:
        self._sender = sender

    @activity.defn(name=SEND_ACTIVITY)
    async def send_reminders(self, params: SendReminders) -> ReminderOutcome:
        """Exactly once: a retried attempt (the last may have sent before it was cut short)
        first reads which reminders the profile holds."""
        info = activity.info()
        try:
            return await self._sender.send(
                info.workflow_id or params.customer_key,
                params.identifiers,
                params.timers,
                in_doubt=info.attempt > 1,
            )
        except InsiderError as exc:
            # Retried until it goes through, whatever the cause (a reminder waits for an
            # operator to fix the settings rather than being lost).
            raise ApplicationError(str(exc), type=type(exc).__name__) from exc
