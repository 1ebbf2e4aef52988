"""A re-drive attempt heartbeats while it works, so a dead worker's batch is retried within
the workflow's heartbeat timeout instead of its 10-minute start-to-close timeout."""

from __future__ import annotations

import asyncio

from temporalio.testing import ActivityEnvironment

from activities.redrive import heartbeating


async def test_work_that_takes_a_while_heartbeats_and_returns_its_result() -> None:
    # Given an activity environment recording heartbeats
    beats: list[object] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    async def slow_work() -> str:
        await asyncio.sleep(0.3)
        return "done"

    # When work lasting many heartbeat intervals runs heartbeating every 0.02 s
    result = await env.run(heartbeating, slow_work(), 0.02)

    # Then its result comes back, and heartbeats went out while it ran
    assert result == "done"
    assert len(beats) >= 3


async def test_quick_work_does_not_heartbeat() -> None:
    # Given an activity environment recording heartbeats
    beats: list[object] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    async def quick_work() -> int:
        return 7

    # When work finishes within one interval
    result = await env.run(heartbeating, quick_work(), 5.0)

    # Then nothing was sent
    assert result == 7
    assert beats == []
