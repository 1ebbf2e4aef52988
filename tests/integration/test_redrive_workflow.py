"""RedriveWorkflow schedules each batch with a heartbeat timeout: a batch whose worker died
is tried again within seconds (`make reliability` found one stalled for the 10-minute
start-to-close timeout)."""

from __future__ import annotations

import uuid

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.redrive import RedriveBatch
from ct_insider.sync.redrive import RedriveResult
from workflows.redrive import HEARTBEAT_TIMEOUT, RedriveInput, RedriveWorkflow

pytestmark = pytest.mark.integration


@activity.defn(name="redrive_letters")
async def delivered(params: RedriveBatch) -> RedriveResult:
    return RedriveResult(delivered=list(params.keys))


async def test_each_batch_is_scheduled_with_a_heartbeat_timeout(
    client: Client, task_queue: str
) -> None:
    # Given a re-drive of 150 letters (two batches)
    keys = [f"letter-{n}" for n in range(150)]
    async with Worker(
        client, task_queue=task_queue, workflows=[RedriveWorkflow], activities=[delivered]
    ):
        # When it runs
        handle = await client.start_workflow(
            RedriveWorkflow.run,
            RedriveInput(keys=keys),
            id=f"redrive-test-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        result = await handle.result()

    # Then every letter was delivered, and each batch's activity carried the heartbeat
    # timeout (so a dead worker's attempt is retried after it)
    assert result.delivered == keys
    scheduled = [
        event.activity_task_scheduled_event_attributes
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert len(scheduled) == 2
    assert {s.heartbeat_timeout.ToTimedelta() for s in scheduled} == {HEARTBEAT_TIMEOUT}
