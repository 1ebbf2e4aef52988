"""Tell every journey shard a reshard involves about it, starting those not running yet
(a new owner must exist before its old shards hand off to it)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client

from ct_insider.journeys.layout import LayoutChange
from workflows.journey_shard import (
    SHARD_TASK_TIMEOUT,
    JourneyShardWorkflow,
    ShardInput,
    shard_workflow_id,
)


class AnnounceInput(BaseModel):
    task_queue: str  # the journey task queue: the shards' ids are derived from it
    change: LayoutChange


@activity.defn
async def announce_layout(params: AnnounceInput) -> None:
    await announce(activity.client(), params.task_queue, params.change)


async def announce(client: Client, task_queue: str, change: LayoutChange) -> None:
    await asyncio.gather(
        *(
            client.start_workflow(
                JourneyShardWorkflow.run,
                ShardInput(shard=shard),
                id=shard_workflow_id(task_queue, shard),
                task_queue=task_queue,
                start_signal="relayout",
                task_timeout=SHARD_TASK_TIMEOUT,
                start_signal_args=[change],
            )
            for shard in range(change.shards())
        )
    )
