"""A test-only timer workflow that keeps the timer contract (ct_insider/timers/kinds.py), so
`ct-insider timers` and the cap are tested without the cart or replenishment workflows: it
sets CtTimerKind, CtRunKind and CtTimerDueAt, answers the timers query, and ends on the
cancel signal without "sending" anything (its result says which way it ended)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

from ct_insider.search_attributes import RUN_KIND, TIMER_DUE_AT, TIMER_KIND
from ct_insider.timers.kinds import (
    CANCEL_SIGNAL,
    TIMERS_QUERY,
    ArmedTimer,
    CancelTimers,
    TimerKind,
)


class ContractTimerInput(BaseModel):
    kind: TimerKind
    key: str
    due_in_seconds: float


@workflow.defn
class ContractTimerWorkflow:
    @workflow.init
    def __init__(self, params: ContractTimerInput) -> None:
        self._params = params
        self._due = workflow.now() + timedelta(seconds=params.due_in_seconds)
        self._cancel: CancelTimers | None = None

    @workflow.run
    async def run(self, params: ContractTimerInput) -> str:
        workflow.upsert_search_attributes(
            [
                TIMER_KIND.value_set(params.kind),
                RUN_KIND.value_set(params.kind),
                TIMER_DUE_AT.value_set(self._due),
            ]
        )
        try:
            await workflow.wait_condition(
                lambda: self._cancel is not None,
                timeout=timedelta(seconds=params.due_in_seconds),
            )
        except TimeoutError:
            return "fired"
        workflow.upsert_search_attributes([TIMER_DUE_AT.value_unset()])
        assert self._cancel is not None
        return f"cancelled: {self._cancel.reason}"

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self, request: CancelTimers) -> None:
        self._cancel = request

    @workflow.query(name=TIMERS_QUERY)
    def timers(self) -> list[ArmedTimer]:
        if self._cancel is not None:
            return []
        return [
            ArmedTimer(
                kind=self._params.kind,
                key=self._params.key,
                due_at=self._due,
                what="reminder 1 of 1",
            )
        ]
