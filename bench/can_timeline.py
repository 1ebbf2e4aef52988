"""What each continue-as-new of the journey shards cost in time, from the histories.

For each run that continued-as-new: the pause (from its last local activity's result to
the next run's first completed workflow task: the carry built, the continuing task, the
new run started and its carry read back, while the shard delivered nothing), and whether
its continuing task was refused (UnhandledCommand: a signal arrived during that task; the
worker then replays the whole run before it can try again). Only each run's last and first
events are read (reverse paging), so the figures cost a few requests per run.
"""

from __future__ import annotations

from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    GetWorkflowExecutionHistoryReverseRequest,
)
from temporalio.client import Client

from bench.harness import percentile

TAIL_EVENTS = 200  # read back from each run's end
HEAD_EVENTS = 30  # and from its start


def _seconds(event: HistoryEvent) -> float:
    return float(event.event_time.ToMicroseconds()) / 1e6


async def _events(
    client: Client, workflow_id: str, run_id: str, *, last: bool, count: int
) -> list[HistoryEvent]:
    """The run's first `count` events, or its last (reverse paging), in history order."""
    execution = WorkflowExecution(workflow_id=workflow_id, run_id=run_id)
    service = client.workflow_service
    if last:
        backwards = await service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace, execution=execution, maximum_page_size=count
            )
        )
        return list(reversed(backwards.history.events))
    forwards = await service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace, execution=execution, maximum_page_size=count
        )
    )
    return list(forwards.history.events)


def _pause(tail: list[HistoryEvent], head: list[HistoryEvent]) -> float | None:
    markers = [e for e in tail if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    completed = [e for e in head if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    if not markers or not completed:
        return None
    # The last marker of the old run before its continuing tasks: the carry is built in the
    # task after the last delivery, so the last marker is at most a task earlier.
    return _seconds(completed[0]) - _seconds(markers[-1])


async def continue_as_new_figures(client: Client, task_queue: str) -> dict[str, Any]:
    """Pauses (seconds) and refused continuing tasks over every shard run on the queue."""
    closed: list[tuple[str, str]] = []
    async for execution in client.list_workflows(f"TaskQueue = '{task_queue}'"):
        closed.append((execution.id, execution.run_id))
    pauses: list[float] = []
    refused = continued = 0
    for workflow_id, run_id in closed:
        tail = await _events(client, workflow_id, run_id, last=True, count=TAIL_EVENTS)
        if not tail or tail[-1].event_type != (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        ):
            continue
        continued += 1
        refused += sum(
            1
            for e in tail
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            and e.workflow_task_failed_event_attributes.cause
            == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
        )
        attributes = tail[-1].workflow_execution_continued_as_new_event_attributes
        head = await _events(
            client, workflow_id, attributes.new_execution_run_id, last=False, count=HEAD_EVENTS
        )
        pause = _pause(tail, head)
        if pause is not None:
            pauses.append(pause)
    return {
        "continued_as_new": continued,
        "continuing_tasks_refused": refused,
        "pause_p50_seconds": round(percentile(pauses, 0.5), 3) if pauses else None,
        "pause_max_seconds": round(max(pauses), 3) if pauses else None,
    }
