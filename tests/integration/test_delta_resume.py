"""A delta sync that was terminated resumes from the watermark it stored outside its run."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import pytest
from temporalio.client import Client

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.sync.watermarks import WatermarkStore
from ct_insider.sync.window import parse_timestamp
from tests.conftest import Emulators, clock_past, run_cli, status_when
from workers.main import Workers
from workflows.delta import delta_workflow_id

pytestmark = pytest.mark.integration

OVERLAP = 0.5
MARGIN = 0.3


async def _stored(emu: Emulators) -> datetime | None:
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        stored = await WatermarkStore(ct).get("customers")
    return stored.watermark if stored else None


async def _first_window_since(client: Client) -> datetime:
    """The lower bound of the first window the (new) run synced, from its history."""
    handle = client.get_workflow_handle(delta_workflow_id("customers"))
    async for event in handle.fetch_history_events():
        if not event.HasField("activity_task_scheduled_event_attributes"):
            continue
        scheduled = event.activity_task_scheduled_event_attributes
        if scheduled.activity_type.name == "sync_chunk":
            # Through the client's converter: payloads are encrypted (ct_insider/codec.py).
            [chunk] = await client.data_converter.decode(scheduled.input.payloads[:1])
            return datetime.fromisoformat(chunk["window"]["since"])
    raise AssertionError("the run synced no window")


async def test_a_terminated_delta_started_again_resumes_from_its_stored_watermark(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    env = emu.environment(client.service_client.config.target_host, worker.task_queue)
    timing = ["--interval", "0.5", "--margin", str(MARGIN), "--overlap", str(OVERLAP)]
    # Given customers synced by a delta that was then terminated
    customers = emu.seeder().customers(5)
    first = await asyncio.to_thread(
        run_cli, env, "sync", "delta", "customers", "--since", "2020-01-01T00:00:00Z", *timing
    )
    assert first.returncode == 0, first.stderr
    handle = client.get_workflow_handle(delta_workflow_id("customers"))
    synced = await status_when(handle, lambda s: s.totals.sent == 5)
    # (windows past the seeding's overlap: a restart re-reads only the overlap)
    await status_when(handle, lambda s: s.windows >= synced.windows + 3)
    await handle.terminate("simulated outage")
    stored = await _stored(emu)
    assert stored is not None
    # ... which `ct-insider status` shows while none runs
    shown = await asyncio.to_thread(run_cli, env, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    customers_status = json.loads(shown.stdout)["customers"]
    assert customers_status["running"] is False
    assert datetime.fromisoformat(customers_status["stored_watermark"]["watermark"]) == stored

    # When customers change while no delta runs, and some time passes
    customer_id, _ = customers[2]
    current = emu.ct("GET", f"customers/{customer_id}")
    emu.ct(
        "POST",
        f"customers/{customer_id}",
        {
            "version": current["version"],
            "actions": [{"action": "setFirstName", "firstName": "ChangedWhileDown"}],
        },
    )
    [(late_id, _)] = emu.seeder().customers(1, seed=2, prefix="late")
    # (past the margin and overlap: a restart "from now" would start after these changes)
    late = parse_timestamp(emu.ct("GET", f"customers/{late_id}")["lastModifiedAt"])
    await clock_past(late + timedelta(seconds=MARGIN + OVERLAP + 0.2))

    # ... and the delta is started again without --since
    again = await asyncio.to_thread(run_cli, env, "sync", "delta", "customers", "--json", *timing)

    # Then it says it resumes from the stored watermark, and does
    assert again.returncode == 0, again.stderr
    [started] = json.loads(again.stdout)
    assert started["resumes_from"]["source"] == "stored"
    assert datetime.fromisoformat(started["resumes_from"]["watermark"]) == stored
    handle = client.get_workflow_handle(delta_workflow_id("customers"))
    try:
        status = await status_when(handle, lambda s: s.totals.sent >= 2)
        assert await _first_window_since(client) == stored - timedelta(seconds=OVERLAP)
        # The changes made while it was down reached Insider, and nothing else was re-sent
        assert status.totals.sent == 2
        profiles = {u["identifiers"]["uuid"]: u for u in emu.insider_users()}
        assert profiles[customer_id]["attributes"]["name"] == "ChangedWhileDown"
        assert late_id in profiles
        # ... and the store moves on with the new run
        moved = await _stored(emu)
        assert moved is not None
        assert moved > stored
    finally:
        await handle.terminate("test over")
