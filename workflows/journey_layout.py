"""JourneyLayoutWorkflow: the journey shard layout of one journey task queue, and its
changes (ct_insider/journeys/layout.py).

Its memo holds the layout (`LayoutStatus`): the bridges read it by describing the workflow,
which needs no worker. `reshard` (an update, one at a time) announces epoch e+1 to every
shard it involves, then makes it effective a lead time later; when every old shard reported
its handoff, the new layout is the current one and the workflow continues-as-new with it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.layout import AnnounceInput, announce_layout
    from ct_insider.journeys.layout import (
        DEFAULT_GRACE_SECONDS,
        DEFAULT_LEAD_SECONDS,
        LAYOUT_MEMO,
        MAX_SHARDS,
        HandedOff,
        Layout,
        LayoutChange,
        LayoutStatus,
    )


class LayoutInput(BaseModel):
    status: LayoutStatus


class ReshardRequest(BaseModel):
    shards: int = Field(ge=1, le=MAX_SHARDS)
    # Announced this long before it takes effect: every bridge must have read it by then.
    lead_seconds: float = Field(default=DEFAULT_LEAD_SECONDS, gt=0)
    # Old shards hand off this long after it took effect.
    grace_seconds: float = Field(default=DEFAULT_GRACE_SECONDS, ge=0)


def layout_memo(status: LayoutStatus) -> dict[str, object]:
    return {LAYOUT_MEMO: status.model_dump(mode="json")}


@workflow.defn
class JourneyLayoutWorkflow:
    @workflow.init
    def __init__(self, params: LayoutInput) -> None:
        self._status = params.status
        self._announcing = False

    @workflow.query
    def status(self) -> LayoutStatus:
        return self._status

    @workflow.update
    async def reshard(self, request: ReshardRequest) -> LayoutStatus:
        self._announcing = True
        current = self._status.current
        lead = timedelta(seconds=request.lead_seconds)
        effective_at = workflow.now() + lead
        while True:
            change = LayoutChange(
                epoch=current.epoch + 1,
                old_shards=current.shards,
                new_shards=request.shards,
                handoff_at=effective_at + timedelta(seconds=request.grace_seconds),
            )
            await workflow.execute_activity(
                announce_layout,
                AnnounceInput(task_queue=workflow.info().task_queue, change=change),
                start_to_close_timeout=timedelta(minutes=1),
            )
            # The bridges learn it within half the lead (they refuse events when they
            # could not read the layout for longer): a slow announcement goes again, later.
            if workflow.now() <= effective_at - lead / 2:
                break
            effective_at = workflow.now() + lead
        upcoming = Layout(epoch=change.epoch, shards=request.shards, effective_at=effective_at)
        self._status = LayoutStatus(
            current=current, next=upcoming, change=change, handed_off=self._status.handed_off
        )
        workflow.upsert_memo(layout_memo(self._status))
        self._announcing = False
        return self._status

    @reshard.validator
    def _one_at_a_time(self, request: ReshardRequest) -> None:
        if self._announcing or self._status.next is not None:
            raise ValueError("a reshard is in progress: wait until it is complete")
        if request.shards == self._status.current.shards:
            raise ValueError(f"the journey shards are {request.shards} already")

    @workflow.signal
    def handed_off(self, report: HandedOff) -> None:
        # (a shard told of a slow announcement's first moment may report before the update
        # published the change)
        if report.epoch != self._status.current.epoch + 1:
            return
        if report.shard not in self._status.handed_off:
            self._status.handed_off.append(report.shard)
            workflow.upsert_memo(layout_memo(self._status))

    def _complete(self) -> bool:
        change = self._status.change
        return change is not None and set(change.handing_off()) <= set(self._status.handed_off)

    @workflow.run
    async def run(self, params: LayoutInput) -> None:
        await workflow.wait_condition(lambda: self._complete() and workflow.all_handlers_finished())
        assert self._status.next is not None
        done = LayoutStatus(current=self._status.next)
        workflow.continue_as_new(LayoutInput(status=done), memo=layout_memo(done))
