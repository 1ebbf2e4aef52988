"""Whether a journey shard's last delivery may have been cut short: read from its history.

A shard rebuilt from history (a new worker, a cache eviction, a restart) runs its next
delivery again only if the delivery of the workflow task before it never completed - the
worker died during it, or Temporal refused the task's completion. Both leave a trace in
history after the last completed workflow task: a task that timed out after it started
(START_TO_CLOSE) or failed. A clean eviction or restart leaves none, and then the rebuilt
shard sends without asking Insider anything.
"""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client

PAGE_SIZE = 100


def cut_short(newest_first: Iterable[HistoryEvent]) -> bool | None:
    """True: a workflow task started after the last completed one and never completed.
    False: the last one completed. None: these events do not reach a completed task."""
    for event in newest_first:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return False
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            return True
        if (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
            and event.workflow_task_timed_out_event_attributes.timeout_type
            == TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE
        ):
            return True
    return None


async def delivery_cut_short(client: Client, workflow_id: str, run_id: str) -> bool:
    """Reads the run's history backwards, a page at a time, until it can tell."""
    token = b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                maximum_page_size=PAGE_SIZE,
                next_page_token=token,
            )
        )
        answer = cut_short(page.history.events)
        if answer is not None:
            return answer
        if not page.next_page_token:
            return False  # the run's start: nothing before it to repeat
        token = page.next_page_token
