"""Temporal Schedules from configuration: applied idempotently, updated and pruned, firing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleDescription,
    ScheduleOverlapPolicy,
)

from ct_insider.schedules import DesiredSchedule, ScheduleConfig, desired
from emulators.process import ct_insider_command
from starters.schedules import (
    act,
    apply_plan,
    compute_plan,
    describe,
    listed_ids,
    memo_of,
    schedule_rows,
)
from tests.conftest import Emulators, eventually, running_worker
from workflows.backfill import BackfillProgress

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def prefix(client: Client) -> AsyncIterator[str]:
    """A prefix of this test's own, so it never touches another test's schedules."""
    mine = f"ct-insider-t{uuid.uuid4().hex[:8]}-"
    yield mine
    for schedule_id in await listed_ids(client, mine):
        await client.get_schedule_handle(schedule_id).delete()


def configs(changes: Mapping[str, Mapping[str, object]] | None = None) -> list[ScheduleConfig]:
    base: dict[str, dict[str, object]] = {
        "check-customers": {"kind": "check-customers", "cron": "0 2 * * *"},
        "check-orders": {"kind": "check-orders", "cron": "0 3 * * *", "input": {"sample": 50}},
        "catalog-reconciliation": {"kind": "catalog-reconciliation", "cron": "0 1 * * *"},
    }
    changes = changes or {}
    merged = {name: {**fields, **changes.get(name, {})} for name, fields in base.items()}
    return [
        ScheduleConfig.model_validate({"name": name, **fields})
        for name, fields in merged.items()
        if not fields.get("drop")
    ]


async def apply(client: Client, wanted: list[DesiredSchedule], prefix: str) -> dict[str, str]:
    steps = await compute_plan(client, wanted, prefix)
    await apply_plan(client, steps, wanted)
    return {step.id.removeprefix(prefix): step.action for step in steps}


async def described(client: Client, schedule_id: str) -> ScheduleDescription:
    found = await describe(client, schedule_id)
    assert found is not None, f"no schedule {schedule_id}"
    return found


async def test_schedules_apply_idempotently_update_what_changed_and_drop_what_is_gone(
    client: Client, task_queue: str, prefix: str
) -> None:
    # Given a configuration of three schedules
    wanted = desired(configs(), prefix=prefix, task_queue=task_queue)

    # When it is applied twice
    first = await apply(client, wanted, prefix)
    second = await apply(client, wanted, prefix)

    # Then the first apply creates them all and the second changes nothing
    assert set(first.values()) == {"create"}
    assert second == dict.fromkeys(first, "unchanged")
    orders = await described(client, f"{prefix}check-orders")
    assert orders.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert orders.schedule.policy.catchup_window == timedelta(hours=1)
    assert orders.schedule.spec.jitter == timedelta(minutes=5)
    assert not orders.schedule.state.paused
    action = orders.schedule.action
    assert getattr(action, "workflow", None) == "ConsistencyCheckWorkflow"
    assert getattr(action, "task_queue", None) == task_queue
    memo = await memo_of(client, orders)
    assert memo["kind"] == "check-orders"

    # When the configuration changes one schedule and no longer names another
    await _until_listed(client, prefix, 3)
    changed = desired(
        configs({"check-customers": {"cron": "30 5 * * *"}, "check-orders": {"drop": True}}),
        prefix=prefix,
        task_queue=task_queue,
    )
    third = await apply(client, changed, prefix)

    # Then exactly that one is updated and the other deleted
    assert third == {
        "check-customers": "update",
        "catalog-reconciliation": "unchanged",
        "check-orders": "delete",
    }
    assert await describe(client, f"{prefix}check-orders") is None
    customers = await described(client, f"{prefix}check-customers")
    assert (await memo_of(client, customers))["spec"] == "cron 30 5 * * *"
    assert customers.info.next_action_times[0].hour == 5
    # ... and applying that again changes nothing
    assert set((await apply(client, changed, prefix)).values()) == {"unchanged"}


async def _until_listed(client: Client, prefix: str, count: int) -> None:
    """The list comes from visibility, which may lag a write by a moment."""
    await eventually(
        lambda: listed_ids(client, prefix),
        until=lambda ids: len(ids) >= count,
        what=f"{count} schedules listed",
    )


async def test_a_short_interval_schedule_fires_and_can_be_paused_triggered_and_unpaused(
    client: Client, task_queue: str, clean_emulators: Emulators, prefix: str
) -> None:
    # Given a catalog, a worker and a catalog reconciliation scheduled every 2 seconds
    clean_emulators.seeder().catalog(2)
    interval = timedelta(seconds=2)
    reconciliation = ScheduleConfig(
        name="catalog-reconciliation",
        kind="catalog-reconciliation",
        every_seconds=interval.total_seconds(),
        jitter_seconds=0,
        catch_up_window_seconds=10,
    )
    wanted = desired([reconciliation], prefix=prefix, task_queue=task_queue)
    schedule_id = wanted[0].id
    async with running_worker(client, task_queue, clean_emulators):
        assert await apply(client, wanted, prefix) == {"catalog-reconciliation": "create"}

        # When it fires, Then the run it started completes
        first = await _run_started(client, schedule_id, after=0)
        progress = await client.get_workflow_handle(
            first.workflow_id, run_id=first.first_execution_run_id, result_type=BackfillProgress
        ).result()
        assert progress.status == "completed"
        assert first.workflow_id.startswith(f"{schedule_id}-")

        # When it is paused, Then it stops firing: nothing started by an interval after the
        # next run it was due to start
        report = await act(client, "pause", ["catalog-reconciliation"], False, prefix)
        assert report.done == [schedule_id]
        paused = await described(client, schedule_id)
        assert paused.schedule.state.paused
        paused_at = datetime.now(UTC)
        past_due = paused.info.next_action_times[0] + interval
        await eventually(lambda: datetime.now(UTC) > past_due, what=f"past {past_due}")
        # (judged by when each run was due, not by a count read at the pause: a run due
        # before the pause may still have been starting then, and counted just after)
        settled = await described(client, schedule_id)
        assert [
            r.scheduled_at for r in settled.info.recent_actions if r.scheduled_at > paused_at
        ] == []
        actions = settled.info.num_actions
        # ... and the list shows it paused, with its last run's outcome (that run may have
        # started just before the pause: once it has ended)
        last = settled.info.recent_actions[-1].action
        assert isinstance(last, ScheduleActionExecutionStartWorkflow)
        await client.get_workflow_handle(
            last.workflow_id, run_id=last.first_execution_run_id
        ).result()
        [row] = await eventually(lambda: schedule_rows(client, prefix), what="the schedule listed")
        assert (row.id, row.paused, row.last_outcome) == (schedule_id, True, "COMPLETED")

        # When it is triggered while paused, Then it runs once now
        await act(client, "trigger", [schedule_id], False, prefix)
        triggered = await _run_started(client, schedule_id, after=actions)
        assert triggered.workflow_id != first.workflow_id

        # When it is unpaused, Then it fires again on its own
        await act(client, "unpause", [schedule_id], False, prefix)
        assert not (await described(client, schedule_id)).schedule.state.paused
        await _run_started(client, schedule_id, after=actions + 1)


async def _run_started(
    client: Client, schedule_id: str, *, after: int
) -> ScheduleActionExecutionStartWorkflow:
    """The newest run the schedule started, once it has started more than `after`."""
    found = await eventually(
        lambda: described(client, schedule_id),
        until=lambda found: found.info.num_actions > after and found.info.recent_actions,
        what=f"{schedule_id} to start run {after + 1}",
    )
    action = found.info.recent_actions[-1].action
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    return action


async def test_the_cli_applies_lists_and_refuses_unknown_ids_and_bad_config(
    client: Client, task_queue: str, emulators: Emulators, prefix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **emulators.environment(client.service_client.config.target_host, task_queue),
        "CT_INSIDER_SCHEDULES_PREFIX": prefix,
    }
    config = tmp_path / "schedules.json"
    config.write_text(json.dumps({"omit": ["check-orders", "check-catalog"]}))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ct_insider_command("schedules", *args),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # When the defaults (less two omitted) are planned, then applied
    dry = await asyncio.to_thread(cli, "apply", "--config", str(config), "--dry-run", "--json")
    applied = await asyncio.to_thread(cli, "apply", "--config", str(config), "--json")

    # Then the dry run changed nothing and the apply created what it planned
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True
    assert applied.returncode == 0, applied.stderr
    steps = {s["id"]: s["action"] for s in json.loads(applied.stdout)["steps"]}
    assert steps == {
        f"{prefix}catalog-reconciliation": "create",
        f"{prefix}check-customers": "create",
    }
    await _until_listed(client, prefix, 2)
    listed = await asyncio.to_thread(cli, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == set(steps)
    assert rows[f"{prefix}check-customers"]["spec"] == "cron 0 2 * * *"
    assert rows[f"{prefix}check-customers"]["next_run"] is not None

    # When an unknown schedule is paused, Then exit 1 naming it
    unknown = await asyncio.to_thread(cli, "pause", "no-such-schedule")
    assert unknown.returncode == 1
    assert f"no schedule {prefix}no-such-schedule" in unknown.stderr

    # When the configuration is invalid, Then exit 2 with the reason, and nothing changes
    config.write_text(json.dumps({"schedules": [{"name": "x", "kind": "check-orders"}]}))
    bad = await asyncio.to_thread(cli, "apply", "--config", str(config))
    assert bad.returncode == 2
    assert "exactly one of cron or every_seconds" in bad.stderr
    assert set(await listed_ids(client, prefix)) == set(steps)
