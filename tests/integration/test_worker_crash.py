"""A worker process killed mid-backfill: another one finishes the run, no event twice."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from temporalio.client import Client

from starters.backfill import start_backfill
from tests.conftest import Emulators, eventually, retried_activity_attempts, worker_process
from tests.integration.test_order_backfill import (
    all_orders,
    expected_purchases,
    stored_purchases,
)
from workflows.backfill import BackfillInput

pytestmark = pytest.mark.integration


async def test_killed_worker_is_replaced_and_no_purchase_event_is_duplicated(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    # Given 1,500 orders and a slowish Insider, so the backfill takes a few seconds
    seeder = clean_emulators.seeder()
    customers = seeder.customers(300)
    seeder.orders(1_500, customers, seeder.catalog(10))
    orders = all_orders(clean_emulators)
    expected = expected_purchases(orders)
    clean_emulators.insider_faults(latency_ms=40)
    first = worker_process(clean_emulators, client, task_queue, tmp_path, "worker-1").start()

    # When the worker process is killed (SIGKILL) while the order backfill runs
    handle = await start_backfill(
        client,
        task_queue,
        BackfillInput(target="orders", batch_size=50, heartbeat_seconds=3),
    )
    try:
        await eventually(
            lambda: sum(stored_purchases(clean_emulators).values()),
            100,
            until=lambda stored: stored >= 600,
            what="the run well under way (600 purchases stored)",
        )
        # (while Insider holds one of its upserts: the kill lands inside a chunk's activity
        # whatever the machine's load; Insider stores that upsert after the worker died)
        clean_emulators.insider_faults(latency_ms=40, hold_after=0)
        await eventually(
            lambda: clean_emulators.insider_stats()["held"].get("upsert"),
            what="an upsert held, to cut short",
        )
        assert first.process is not None
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        at_kill = sum(stored_purchases(clean_emulators).values())
        clean_emulators.insider_faults(latency_ms=40)
        # ... and a new worker starts
        with worker_process(clean_emulators, client, task_queue, tmp_path, "worker-2"):
            result = await asyncio.wait_for(handle.result(), timeout=180)
    finally:
        first.stop()

    # Then the run completed on the new worker, and every purchase is in Insider once
    assert at_kill < sum(expected.values()), "killed too late: the run was already done"
    assert result.status == "completed"
    assert result.phases[0].stats.rejected == 0
    assert stored_purchases(clean_emulators) == expected
    assert await retried_activity_attempts(handle), "the killed worker's chunk was never retried"
    resumed = (tmp_path / "worker-2.log").read_text()
    assert "resuming chunk from heartbeat" in resumed
