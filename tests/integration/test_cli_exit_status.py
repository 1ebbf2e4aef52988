"""The CLI's contract with scripts: its own exit status every time, JSON on stdout, one line on
stderr (no traceback) when a system is unreachable."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import Client

from emulators.process import free_port
from tests.conftest import Emulators, run_cli, running_worker

pytestmark = pytest.mark.integration

RUNS = 6


async def test_a_completed_command_that_used_temporal_exits_with_its_own_status_every_time(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    # Given customers in commercetools and a worker
    clean_emulators.seeder().customers(20)
    env = clean_emulators.environment(client.service_client.config.target_host, task_queue)
    async with running_worker(client, task_queue, clean_emulators):
        # When `backfill customers --wait --json` runs to its end several times in a row
        # (the SDK's teardown race killed 2 of 3 such runs with status 134)
        runs = [
            await asyncio.to_thread(run_cli, env, "backfill", "customers", "--wait", "--json")
            for _ in range(RUNS)
        ]
    # Then every run exits 0, prints one JSON document and no fatal error
    for run in runs:
        assert "Fatal Python error" not in run.stderr
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        assert report["progress"]["status"] == "completed"
    assert [
        json.loads(run.stdout)["progress"]["phases"][0]["stats"]["processed"] for run in runs
    ] == [20] * RUNS


async def test_status_json_and_an_unreachable_temporal(
    client: Client, task_queue: str, emulators: Emulators
) -> None:
    env = emulators.environment(client.service_client.config.target_host, task_queue)
    # When the status is asked for as JSON
    shown = await asyncio.to_thread(run_cli, env, "status", "--json")
    # Then it is one JSON document naming every delta sync
    assert shown.returncode == 0, shown.stderr
    assert set(json.loads(shown.stdout)) == {"customers", "orders", "catalog"}

    # When Temporal is not listening
    closed = {**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    down = await asyncio.to_thread(run_cli, closed, "status", "--json")
    # Then exit 3 with one line naming Temporal, and no traceback
    assert down.returncode == 3
    assert down.stderr.startswith("Temporal unreachable:")
    assert "Traceback" not in down.stderr


async def test_a_usage_error_exits_2_with_its_reason() -> None:
    bad_date = await asyncio.to_thread(run_cli, {}, "backfill", "customers", "--since", "yesterday")
    assert bad_date.returncode == 2
    assert "not an ISO 8601 timestamp: 'yesterday'" in bad_date.stderr


async def test_a_failed_workflow_under_wait_exits_1_with_one_line(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given a worker whose Insider token Insider refuses (a failure no retry can fix)
    clean_emulators.seeder().customers(3)
    env = clean_emulators.environment(client.service_client.config.target_host, task_queue)
    async with running_worker(client, task_queue, clean_emulators, api_key=SecretStr("wrong")):
        # When a backfill is followed to its end, a few times
        runs = [
            await asyncio.to_thread(run_cli, env, "backfill", "customers", "--wait")
            for _ in range(3)
        ]
    # Then each exits 1 with one line naming the failure, no traceback, no fatal error
    for run in runs:
        assert run.returncode == 1, run.stderr
        assert "backfill: the workflow failed:" in run.stderr
        assert "Traceback" not in run.stderr
        assert "Fatal Python error" not in run.stderr
