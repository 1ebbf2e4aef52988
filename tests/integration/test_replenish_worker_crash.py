"""A worker process killed while replenishment timers are pending, one of them in the
middle of sending its reminder: the next worker loses none and duplicates none."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from ct_insider.timers.kinds import workflow_id
from starters.backfill import start_backfill
from tests.conftest import Emulators, eventually, retried_activity_attempts, worker_process
from tests.integration.test_replenish import (
    armed,
    consumable,
    reminder_count,
    reminders,
    result_of,
)
from workflows.backfill import BackfillInput

pytestmark = pytest.mark.integration

ENV = {
    "CT_INSIDER_REPLENISHMENT_ENABLED": "true",
    "CT_INSIDER_REPLENISHMENT_DAY_SECONDS": "1",
    "CT_INSIDER_REPLENISHMENT_SCALED_FOR_TESTS": "true",
    # A send cut short is retried after this; Insider stores the cut-short send as soon as
    # the worker is dead, so the retry's profile read sees what it stored.
    "CT_INSIDER_REPLENISHMENT_SEND_TIMEOUT_SECONDS": "10",
    "INSIDER_SETTLE_GRACE_SECONDS": "0.5",
}
# "Days" (seconds here) after the purchase. The backfill arms every timer well before the
# first are due, and the kill lands well before the later ones: seconds of margin each way
# (the worker is up before the purchases, so its start takes none of them).
FIRST_DUE = 10  # the reminders the kill cuts
LATER_DUE = 26  # the timers still pending when the worker dies


async def test_replenish_worker_killed_while_timers_are_pending_loses_and_duplicates_none(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    emu = clean_emulators
    # (the worker is up before the purchases: a loaded machine's slow start eats into no due
    # time)
    worker_1 = worker_process(emu, client, task_queue, tmp_path, "worker-1", **ENV).start()
    try:
        customers = emu.seeder().customers(10)
        first = consumable(emu, f"FIRST-{uuid.uuid4().hex[:8]}", FIRST_DUE)
        later = consumable(emu, f"LATER-{uuid.uuid4().hex[:8]}", LATER_DUE)
        skus = [p["masterData"]["current"]["masterVariant"]["sku"] for p in (first, later)]
        # Given 10 customers' purchases: 5 due in 10 s, 5 in 26 s
        for n, (customer_id, email) in enumerate(customers):
            emu.place_order(skus[n % 2], customerId=customer_id, customerEmail=email)
        keys = [customer_id for customer_id, _ in customers]
        # ... backfilled on a worker process, which armed their timers
        backfill = await start_backfill(client, task_queue, BackfillInput(target="orders"))
        await backfill.result()
        for key in keys:
            assert len(await armed(client, key)) == 1
        # When the worker dies while Insider takes the first reminders (it holds them until
        # the worker is dead, then stores them: the kill lands inside the send whatever the
        # machine's load)
        emu.insider_faults(hold_after=0)
        try:
            await eventually(
                lambda: emu.insider_stats()["held"].get("upsert"),
                FIRST_DUE * 3,
                what="a reminder upsert held, to cut short",
            )
            assert worker_1.process is not None
            os.killpg(worker_1.process.pid, signal.SIGKILL)
            worker_1.process.wait(10)
        finally:
            emu.insider_faults()
        sent_at_kill = {e["event_params"]["product_id"] for e in reminders(emu)}
        later_fired_at_kill = [await timers_fired(client, key) for key in keys[1::2]]
        # ... and a new worker takes over
        with worker_process(emu, client, task_queue, tmp_path, "worker-2", **ENV):
            results = [await result_of(client, key, within=120) for key in keys]
    finally:
        worker_1.stop()

    # Then each customer got exactly one reminder: none lost, none twice
    assert [r.sent for r in results] == [1] * 10
    assert len(reminder_count(emu)) == 10
    assert set(reminder_count(emu).values()) == {1}
    # And the kill cut a send short (its activity ran again) while the later timers were
    # still pending (none of their reminders had gone out)
    retried = [
        await retried_activity_attempts(
            client.get_workflow_handle(workflow_id("replenishment", key))
        )
        for key in keys[0::2]
    ]
    assert sum(retried) >= 1, "no reminder send was cut short by the kill"
    assert later_fired_at_kill == [0] * len(keys[1::2])
    assert skus[1] not in sent_at_kill
    # And the cut-short send was settled by reading the profile, not sent again
    assert emu.insider_stats()["requests"].get("profile", 0) >= 1


async def timers_fired(client: Client, customer_key: str) -> int:
    """Timers the customer's workflow has fired, as its history says (no worker needed)."""
    handle = client.get_workflow_handle(workflow_id("replenishment", customer_key))
    return len(
        [
            event
            async for event in handle.fetch_history_events()
            if event.HasField("timer_fired_event_attributes")
        ]
    )
