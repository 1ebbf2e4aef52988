"""A journey-worker activation slower than the SDK's 2 s deadlock limit is only slow.

On a busy machine a shard's activation waits for one of the pool's threads and takes in
thousands of signals; past 2 s the SDK would fail the task and evict the shard, whose retry
replays the whole run and is slower still (workers/main.py, tolerate_slow_activations).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client

from workers.main import journey_activation_pool, journey_worker

pytestmark = pytest.mark.integration

SLOW_ACTIVATION_SECONDS = 3.0  # beyond the SDK's 2 s


@workflow.defn
class SlowActivationWorkflow:
    @workflow.run
    async def run(self) -> str:
        # Stands in for CPU-bound work that holds the activation (no I/O, deterministic).
        time.sleep(SLOW_ACTIVATION_SECONDS)  # noqa: ASYNC251 (the blocking is the point)
        return "done"


async def test_an_activation_slower_than_two_seconds_completes_in_its_first_task(
    client: Client,
) -> None:
    queue = f"slow-activation-{uuid.uuid4()}"
    activations = journey_activation_pool()
    try:
        # Given the journey worker
        async with journey_worker(client, queue, [SlowActivationWorkflow], [], activations):
            # When a workflow's activation runs for 3 s
            handle = await client.start_workflow(
                "SlowActivationWorkflow",
                id=f"slow-{uuid.uuid4()}",
                task_queue=queue,
                task_timeout=timedelta(seconds=10),
            )
            # (with the SDK's 2 s limit every attempt fails: the wait would run out)
            await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        activations.shutdown()
    # Then it completes in its first workflow task: no task failed as a deadlock
    failed = [
        event
        async for event in handle.fetch_history_events()
        if event.HasField("workflow_task_failed_event_attributes")
    ]
    assert failed == []
