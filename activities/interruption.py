"""Whether a journey shard's last delivery may have been cut short: read from its history.

A shard rebuilt from history (a new worker, a cache eviction, a restart) runs deliveries
again only if a workflow task that delivered never completed - the worker died during it,
or Temporal refused the task's completion. Both leave a trace in history after the last
completed workflow task: a task that timed out after it started (START_TO_CLOSE) or failed,
with the id of its started event. Every signal the shard had accepted by then may have been
sent by it. A clean eviction or restart leaves no such trace, and then the rebuilt shard
sends without asking Insider anything.

One failure is not a cut: Temporal refusing a continue-as-new because a signal arrived
meanwhile (cause UNHANDLED_COMMAND). Temporal refuses only a completion that closes the run
for that, and the shard continues-as-new in a task of its own, after a timer, that runs no
delivery (workflows/journey_shard.py); taken for a cut, every such refusal under steady
traffic put hundreds of signals in doubt and cost as many profile reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, TimeoutType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client

PAGE_SIZE = 100


@dataclass
class Verdict:
    """What the history says about the tasks since the last completed one."""

    # The highest started-event id of a task that started and never completed (0: none).
    cut_short_at: int = 0
    decided: bool = False  # reached the last completed task (or the run's start)


def cut_short(newest_first: Iterable[HistoryEvent], verdict: Verdict, as_of: int = 0) -> Verdict:
    """Scans events newest first, until the last completed workflow task before event
    `as_of` (0: the newest). Asked as of a fixed event, the answer never changes: the
    shard's own later tasks do not hide a task that died before."""
    for event in newest_first:
        if as_of and event.event_id > as_of:
            continue
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            verdict.decided = True
            return verdict
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed = event.workflow_task_failed_event_attributes
            if failed.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND:
                continue
            started = failed.started_event_id
        elif (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
            and event.workflow_task_timed_out_event_attributes.timeout_type
            == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
        ):
            started = event.workflow_task_timed_out_event_attributes.started_event_id
        else:
            continue
        verdict.cut_short_at = max(verdict.cut_short_at, started or event.event_id)
    return verdict


async def delivery_cut_short(client: Client, workflow_id: str, run_id: str, as_of: int = 0) -> int:
    """The started-event id of the latest task cut short since the last task completed
    before event `as_of` (0: the newest event), 0 if none. Reads the run's history
    backwards, a page at a time, until it can tell."""
    token = b""
    verdict = Verdict()
    while True:
        page = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                maximum_page_size=PAGE_SIZE,
                next_page_token=token,
            )
        )
        if cut_short(page.history.events, verdict, as_of).decided or not page.next_page_token:
            return verdict.cut_short_at
        token = page.next_page_token
