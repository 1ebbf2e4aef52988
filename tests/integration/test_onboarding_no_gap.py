"""Onboarding loses nothing: backfill, then delta, with no gap between them.

A delta started without --since after a backfill starts where the backfill started reading
(the watermark the completed backfill left), so what changed while the backfill read its
pages, and between its end and the delta's start, reaches Insider. With no watermark at
all a delta is refused, saying what to run or pass, instead of starting from now.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.sync.watermarks import CLOCK_SKEW_ALLOWANCE, WatermarkStore
from ct_insider.sync.window import parse_timestamp
from starters.delta import start_delta
from tests.conftest import Emulators, clock_past, eventually, run_cli
from workers.main import Workers
from workflows.delta import DeltaSyncInput, delta_workflow_id
from workflows.watermarks import NO_WATERMARK_ERROR

pytestmark = pytest.mark.integration

TIMING = ["--interval", "0.5", "--margin", "0.3", "--overlap", "0.5"]
MARGIN_AND_OVERLAP = timedelta(seconds=0.3 + 0.5 + 0.2)  # (and a fifth of a second more)


def _rename(emu: Emulators, customer_id: str, first_name: str) -> None:
    current = emu.ct("GET", f"customers/{customer_id}")
    emu.ct(
        "POST",
        f"customers/{customer_id}",
        {
            "version": current["version"],
            "actions": [{"action": "setFirstName", "firstName": first_name}],
        },
    )


def _names(emu: Emulators) -> dict[str, Any]:
    return {u["identifiers"]["uuid"]: u["attributes"].get("name") for u in emu.insider_users()}


async def _delta_run(client: Client) -> str | None:
    """The latest run of the customers' delta (its id is not per task queue: earlier tests
    of the session may have left one), None if there never was one."""
    try:
        described = await client.get_workflow_handle(delta_workflow_id("customers")).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return described.run_id


async def test_changes_during_and_after_a_backfill_reach_insider_through_the_delta_without_since(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    env = emu.environment(client.service_client.config.target_host, worker.task_queue)
    customers = sorted(emu.seeder().customers(12))
    first_page, after_page = customers[0][0], customers[1][0]

    # Given no watermark anywhere and no delta running (one an earlier test left is stopped)
    handle = client.get_workflow_handle(delta_workflow_id("customers"))
    if await _delta_run(client) is not None:
        described = await handle.describe()
        if described.status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("a test needs no customers delta running")
    # ... a delta without --since is refused, saying what to do, and starts nothing
    before = await _delta_run(client)
    refused = await asyncio.to_thread(run_cli, env, "sync", "delta", "customers", *TIMING)
    assert refused.returncode == 2, refused.stderr
    assert "no stored watermark" in refused.stderr
    assert "`ct-insider backfill customers --wait`" in refused.stderr
    assert "--since" in refused.stderr
    assert await _delta_run(client) == before

    # When a backfill reads its first page (of 5, by id) while Insider answers 429 ...
    emu.insider_faults(rate_limited_rate=1.0, retry_after_seconds=1.0)
    backfill = asyncio.create_task(
        asyncio.to_thread(
            run_cli, env, "backfill", "customers", "--batch-size", "5", "--wait", "--json"
        )
    )
    await eventually(
        lambda: emu.insider_stats()["statuses"].get("upsert:429", 0),
        what="the backfill's first upsert, after reading its first page, answered 429",
    )
    # ... a customer on that page is renamed after it was read, then Insider recovers
    _rename(emu, first_page, "RenamedWhileBackfilling")
    emu.insider_faults()
    done = await backfill
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["progress"]["phases"][0]["stats"]["processed"] == 12
    # (the backfill sent what it read: the name from before the rename)
    assert _names(emu)[first_page] != "RenamedWhileBackfilling"
    # ... and after the backfill, before the delta starts, another is renamed, one signs up
    _rename(emu, after_page, "RenamedAfterBackfill")
    [(late_id, _)] = emu.seeder().customers(1, seed=2, prefix="late")
    # (past the margin and overlap: a delta "from now" would start after these changes)
    late = parse_timestamp(emu.ct("GET", f"customers/{late_id}")["lastModifiedAt"])
    await clock_past(late + MARGIN_AND_OVERLAP)

    # Then the backfill left the watermark where its reading started, less the skew allowance
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        stored = await WatermarkStore(ct).get("customers")
    assert stored is not None
    assert stored.workflow_id == report["workflow_id"]
    read_from = datetime.fromisoformat(report["progress"]["phases"][0]["read_from"])
    assert stored.watermark == read_from - CLOCK_SKEW_ALLOWANCE

    # When the delta starts without --since
    started = await asyncio.to_thread(run_cli, env, "sync", "delta", "customers", "--json", *TIMING)
    assert started.returncode == 0, started.stderr
    [point] = json.loads(started.stdout)
    assert point["resumes_from"]["source"] == "stored"
    assert point["resumes_from"]["written_by"] == report["workflow_id"]
    handle = client.get_workflow_handle(delta_workflow_id("customers"))
    try:
        # Then every change, during and after the backfill, reaches Insider
        names = await eventually(
            lambda: _names(emu),
            until=lambda names: (
                names.get(first_page) == "RenamedWhileBackfilling"
                and names.get(after_page) == "RenamedAfterBackfill"
                and late_id in names
            ),
            what="the renames and the late sign-up in Insider",
        )
        assert len(names) == 13
    finally:
        await handle.terminate("test over")


async def test_a_backfill_never_moves_a_newer_watermark_back(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    env = emu.environment(client.service_client.config.target_host, worker.task_queue)
    emu.seeder().customers(3)
    # Given a watermark a delta stored after where a backfill will start reading
    later = datetime.fromisoformat("2999-01-01T00:00:00+00:00")
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        await WatermarkStore(ct).save("customers", later, workflow_id="delta-customers")
    # When a backfill completes
    done = await asyncio.to_thread(run_cli, env, "backfill", "customers", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    # Then the newer watermark stays (the delta synced up to it already)
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        stored = await WatermarkStore(ct).get("customers")
    assert stored is not None
    assert (stored.watermark, stored.workflow_id) == (later, "delta-customers")
    # ... while an older one moves forward to where the backfill started reading
    earlier = datetime.fromisoformat("2000-01-01T00:00:00+00:00")
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        await WatermarkStore(ct).save("customers", earlier, workflow_id="delta-customers")
    again = await asyncio.to_thread(run_cli, env, "backfill", "customers", "--wait", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    read_from = datetime.fromisoformat(report["progress"]["phases"][0]["read_from"])
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        moved = await WatermarkStore(ct).get("customers")
    assert moved is not None
    assert (moved.watermark, moved.workflow_id) == (
        read_from - CLOCK_SKEW_ALLOWANCE,
        report["workflow_id"],
    )
    # ... while a backfill bounded by --until leaves none where none was
    httpx.post(f"{emu.ct_url}/_emulator/reset").raise_for_status()
    emu.seeder().customers(3)
    bounded = await asyncio.to_thread(
        run_cli,
        env,
        "backfill",
        "customers",
        "--until",
        "2999-01-01T00:00:00Z",
        "--wait",
        "--json",
    )
    assert bounded.returncode == 0, bounded.stderr
    assert json.loads(bounded.stdout)["progress"]["status"] == "completed"
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        assert await WatermarkStore(ct).get("customers") is None
    described = await client.get_workflow_handle(
        json.loads(bounded.stdout)["workflow_id"]
    ).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED


async def test_a_delta_workflow_started_without_any_watermark_fails_saying_what_to_run(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given no watermark stored for orders, When a delta workflow is started without one
    # (not through the CLI, which refuses first: a script, a schedule)
    handle = await start_delta(client, worker.task_queue, DeltaSyncInput(entity="orders"))
    # Then it fails at once instead of starting "from now", saying what to run or pass
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == NO_WATERMARK_ERROR
    assert "`ct-insider backfill orders --wait`" in cause.message
    assert "--since" in cause.message
    # ... having synced no window
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        assert await WatermarkStore(ct).get("orders") is None
