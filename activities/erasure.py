"""Erasure activity: one person's Insider profiles and dead letters (ct_insider/erasure/),
and the starter the journey delivery uses to hand a CustomerDeleted to an ErasureWorkflow."""

from __future__ import annotations

from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.base import ConnectorActivities
from activities.errors import as_application_error
from activities.timers import cancel_timer_workflows
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.deadletters import DeadLetterStore
from ct_insider.erasure.eraser import Eraser, ErasureReport
from ct_insider.erasure.plan import ErasureRequest, action_for, erasure_workflow_id
from ct_insider.insider.errors import InsiderError
from ct_insider.replenishment.lines import guest_key

# workflows/erasure.py imports this module: the workflow is started by its name.
ERASURE_WORKFLOW = "ErasureWorkflow"


class ErasureActivities(ConnectorActivities):
    @activity.defn
    async def erase_person(self, request: ErasureRequest) -> ErasureReport:
        """Safe to retry: what an earlier attempt erased is not found again."""
        eraser = Eraser(self._ct, self._insider, DeadLetterStore(self._ct), self._mapping)
        try:
            # First the person's timers: a replenishment or cart reminder sent after the
            # erasure would create their profile again.
            client = activity.client()
            keys = [k for k in (request.customer_id, guest_key(request.email)) if k]
            await cancel_timer_workflows(client, "replenishment", keys, "customer erased")
            subject = await eraser.subject(request)
            carts = await eraser.cart_ids(subject)
            await cancel_timer_workflows(client, "cart", carts, "customer erased")
            return await eraser.erase(request, action_for(self._mapping), subject=subject)
        except (CommercetoolsError, InsiderError) as exc:
            raise as_application_error(exc) from exc


class ErasureStarter:
    """Starts the ErasureWorkflow of a person from inside an activity (the delivery of a
    CustomerDeleted), with the activity's own Temporal client, on the sync task queue
    where the erasure runs. Asking again while one runs attaches to it; a finished one
    runs again (idempotent). Returns the workflow id."""

    def __init__(self, task_queue: str) -> None:
        self._task_queue = task_queue

    async def __call__(self, request: ErasureRequest) -> str:
        handle = await activity.client().start_workflow(
            ERASURE_WORKFLOW,
            request,
            id=erasure_workflow_id(request),
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        return handle.id
