"""A command that starts or waits on a workflow never hangs silently.

Two ways a `--wait` used to wait forever without a word:
- the namespace lacks our search attributes: every workflow task fails on its first upsert
  and is retried forever (the worker logs warnings, the command prints nothing). Before
  starting a workflow a command registers them where the server lets it, and otherwise
  refuses with what to run (`require_search_attributes`, exit 2: nothing was started);
- any workflow task that keeps failing (a worker without the workflow, a nondeterministic
  deploy, a bug): `watched` polls the workflow's current run while the command waits and,
  once its task has been failing for STUCK_AFTER_SECONDS, stops waiting and reports the
  failure's message (exit 2). A workflow whose task no worker picks up is reported on
  stderr (the wait goes on: the worker may be starting).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import (
    EventType,
    PendingWorkflowTaskState,
    TaskQueueType,
    WorkflowTaskFailedCause,
)
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    GetWorkflowExecutionHistoryReverseRequest,
)
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from ct_insider.search_attributes import (
    SearchAttributeConflict,
    SearchAttributesRefused,
    ensure_search_attributes,
)
from starters.output import UsageError, fail

T = TypeVar("T")

# How long a workflow task may keep failing before a waiting command reports it: longer than
# one retried failure (a worker restarting mid-deploy), short enough to be "within seconds".
STUCK_AFTER_SECONDS = 10.0
POLL_SECONDS = 1.0
# History events read back (newest first) to find the failed task's message.
HISTORY_PAGE = 50


class WorkflowStuck(Exception):
    """The workflow's tasks keep failing: waiting on would never end."""

    def __init__(self, workflow_id: str, attempts: int, failure: str, hint: str) -> None:
        super().__init__(
            f"workflow {workflow_id} is stuck: its workflow task failed {attempts} times: "
            f"{failure}; {hint}"
        )
        self.workflow_id = workflow_id
        self.failure = failure


async def require_search_attributes(client: Client) -> list[str]:
    """Before a command starts a workflow: register what the namespace lacks where allowed;
    refuse (UsageError, exit 2) where Temporal refused. Where even listing is refused
    (some Cloud keys), nothing is known: the command goes on and `watched` reports a
    failing task."""
    try:
        return await ensure_search_attributes(client, client.namespace)
    except (SearchAttributesRefused, SearchAttributeConflict) as exc:
        raise UsageError(str(exc)) from None
    except RPCError:
        return []


@dataclass(frozen=True)
class TaskState:
    """What the server says about the current run's pending workflow task."""

    running: bool
    run_id: str
    task_queue: str
    attempt: int  # 0: no task pending
    scheduled_only: bool  # pending but no worker has picked it up


async def task_state(client: Client, workflow_id: str) -> TaskState:
    """The current run's (a handle's run may have continued as new)."""
    described = await client.get_workflow_handle(workflow_id).describe()
    raw = described.raw_description
    pending = raw.pending_workflow_task if raw.HasField("pending_workflow_task") else None
    return TaskState(
        running=described.status == WorkflowExecutionStatus.RUNNING,
        run_id=described.run_id,
        task_queue=described.task_queue,
        attempt=pending.attempt if pending is not None else 0,
        scheduled_only=pending is not None
        and pending.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED,
    )


@dataclass(frozen=True)
class TaskFailure:
    message: str
    cause: WorkflowTaskFailedCause.ValueType


async def last_task_failure(client: Client, workflow_id: str, run_id: str) -> TaskFailure | None:
    """The run's last workflow task outcome if it was a failure (later attempts of a failing
    task are not written to the history: the first failure's message stands for them)."""
    answer = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            maximum_page_size=HISTORY_PAGE,
        )
    )
    for event in answer.history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed = event.workflow_task_failed_event_attributes
            # Through the client's converter: failure messages are encrypted by the codec.
            decoded = await client.data_converter.decode_failure(failed.failure)
            return TaskFailure(message=str(decoded), cause=failed.cause)
        if event.event_type in (
            EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        ):
            return None  # its last task completed, or timed out (a slow or lost worker)
    return None


def hint(failure: TaskFailure) -> str:
    """What an operator does about it."""
    bad_attributes = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_BAD_SEARCH_ATTRIBUTES
    if failure.cause == bad_attributes or "search attribute" in failure.message.lower():
        return (
            "the namespace lacks ct-insider's search attributes: run `ct-insider setup "
            "temporal` (on Temporal Cloud add them in the Cloud UI or with tcld), the "
            "workflow then goes on by itself"
        )
    return (
        "the workflow waits until it is fixed (see its history in the Temporal UI and the "
        "worker's log; `ct-insider doctor` checks the workers)"
    )


async def _pollers(client: Client, task_queue: str) -> int:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len(answer.pollers)


async def watched(
    client: Client,
    workflow_id: str,
    waiting: Awaitable[T],
    *,
    stuck_after: float = STUCK_AFTER_SECONDS,
    poll: float = POLL_SECONDS,
    note: Callable[[str], None] = fail,
) -> T:
    """Await `waiting` (the workflow's result, a progress follower, a poll of its state),
    raising WorkflowStuck once the workflow's task has kept failing for `stuck_after`
    seconds; a task no worker picks up for that long is noted (once) and waited on."""
    result = asyncio.ensure_future(waiting)
    loop = asyncio.get_running_loop()
    failing_since: float | None = None
    unpicked_since: float | None = None
    noted = False
    try:
        while True:
            done, _ = await asyncio.wait([result], timeout=poll)
            if done:
                return result.result()
            try:
                state = await task_state(client, workflow_id)
                failure = None
                if state.running and state.attempt > 1:
                    failure = await last_task_failure(client, workflow_id, state.run_id)
                now = loop.time()
                if failure is None:
                    failing_since = None
                else:
                    failing_since = now if failing_since is None else failing_since
                    if now - failing_since >= stuck_after:
                        raise WorkflowStuck(
                            workflow_id, state.attempt, failure.message, hint(failure)
                        )
                if not (state.running and state.scheduled_only and state.attempt <= 1):
                    unpicked_since = None
                    continue
                unpicked_since = now if unpicked_since is None else unpicked_since
                waited = now - unpicked_since >= stuck_after
                if not noted and waited and await _pollers(client, state.task_queue) == 0:
                    noted = True
                    note(
                        f"workflow {workflow_id} waits for a worker: none polls task queue "
                        f"{state.task_queue} (start `ct-insider worker`; still waiting)"
                    )
            except RPCError:
                continue  # a poll that missed (a run handing over): the wait goes on
    finally:
        if not result.done():
            result.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await result
