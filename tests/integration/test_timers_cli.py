"""`ct-insider timers list|cancel` and the cap, on the real dev server, against a test-only
workflow that keeps the timer contract (tests/timer_contract.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.worker import Worker

from ct_insider.timers.cap import OpenTimerCap, open_timers_query
from ct_insider.timers.kinds import TimerKind, workflow_id
from tests.conftest import Emulators, eventually, run_cli
from tests.timer_contract import ContractTimerInput, ContractTimerWorkflow

pytestmark = pytest.mark.integration

RUNNING = WorkflowExecutionStatus.RUNNING


@asynccontextmanager
async def contract_worker(client: Client, task_queue: str) -> AsyncIterator[None]:
    async with Worker(client, task_queue=task_queue, workflows=[ContractTimerWorkflow]):
        yield


async def start_timer(
    client: Client, task_queue: str, kind: TimerKind, due_in_seconds: float
) -> WorkflowHandle[ContractTimerWorkflow, str]:
    key = uuid.uuid4().hex
    return await client.start_workflow(
        ContractTimerWorkflow.run,
        ContractTimerInput(kind=kind, key=key, due_in_seconds=due_in_seconds),
        id=workflow_id(kind, key),
        task_queue=task_queue,
    )


def cli_json(env: dict[str, str], *args: str) -> Any:
    run = run_cli(env, *args, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


async def test_timers_list_shows_each_kind_soonest_first_and_cancel_ends_them(
    client: Client, task_queue: str, emulators: Emulators
) -> None:
    env = emulators.environment(client.service_client.config.target_host, task_queue)
    async with contract_worker(client, task_queue):
        # Given three cart timers due in 3, 1 and 2 hours, and two replenishment timers
        carts = [await start_timer(client, task_queue, "cart", hours * 3600) for hours in (3, 1, 2)]
        refills = [await start_timer(client, task_queue, "replenishment", 86400) for _ in "ab"]
        mine = {h.id for h in [*carts, *refills]}

        # When the cart timers are listed (once visibility shows them all)
        def cart_rows() -> Any:
            return cli_json(env, "timers", "list", "--kind", "cart")

        listing = await eventually(
            lambda: asyncio.to_thread(cart_rows),
            30,
            until=lambda seen: {c.id for c in carts} <= {t["workflow_id"] for t in seen["timers"]},
            what="the three cart timers in `timers list`",
        )
        # Then only cart timers are listed, soonest due first, each with what it has armed
        assert [c["kind"] for c in listing["counts"]] == ["cart"]
        assert listing["counts"][0]["open"] >= 3
        assert listing["counts"][0]["cap"] == 250_000
        ours = [t for t in listing["timers"] if t["workflow_id"] in mine]
        assert [t["workflow_id"] for t in ours] == [carts[1].id, carts[2].id, carts[0].id]
        for row in ours:
            [armed] = row["armed"]
            assert armed["what"] == "reminder 1 of 1"
            assert armed["due_at"][:19] == row["due_at"][:19]
            assert row["workflow_id"] == f"cart-{armed['key']}"

        # When one cart timer is cancelled by its workflow id
        cancelled = await asyncio.to_thread(
            cli_json, env, "timers", "cancel", carts[1].id, "--reason", "test"
        )
        # Then it ends without firing, saying why
        assert cancelled["cancelled"] == [carts[1].id]
        assert await carts[1].result() == "cancelled: test"

        # When every replenishment timer is to be cancelled without --yes
        unconfirmed = await asyncio.to_thread(
            run_cli, env, "timers", "cancel", "--all", "--kind", "replenishment"
        )
        # Then nothing is done and the count is named
        assert unconfirmed.returncode == 2
        assert "open replenishment timer workflow(s) would be cancelled" in unconfirmed.stderr
        assert [(await h.describe()).status for h in refills] == [RUNNING] * 2

        # When it is confirmed
        confirmed = await asyncio.to_thread(
            cli_json, env, "timers", "cancel", "--all", "--kind", "replenishment", "--yes"
        )
        # Then both end, and the cart timers still run
        assert {h.id for h in refills} <= set(confirmed["cancelled"])
        assert [await h.result() for h in refills] == ["cancelled: cancelled by an operator"] * 2
        assert (await carts[0].describe()).status == RUNNING

        # When an id that is not a timer workflow, and one that ended, are named
        named = await asyncio.to_thread(
            run_cli, env, "timers", "cancel", "cart-no-such-cart", carts[1].id, "--json"
        )
        # Then the command says which and exits 1
        assert named.returncode == 1
        report = json.loads(named.stdout)
        assert (report["not_found"], report["not_running"], report["cancelled"]) == (
            ["cart-no-such-cart"],
            [carts[1].id],
            [],
        )
        await asyncio.to_thread(
            cli_json, env, "timers", "cancel", "--all", "--kind", "cart", "--yes"
        )
        assert [await h.result() for h in (carts[0], carts[2])] == [
            "cancelled: cancelled by an operator"
        ] * 2


async def test_the_cap_counts_open_timers_in_visibility_and_refuses_at_the_cap(
    client: Client, task_queue: str
) -> None:
    async with contract_worker(client, task_queue):
        # Given two open replenishment timers, seen by visibility
        handles = [await start_timer(client, task_queue, "replenishment", 3600) for _ in "ab"]
        query = open_timers_query("replenishment")
        open_now = await eventually(
            lambda: client.count_workflows(query),
            30,
            until=lambda seen: seen.count >= 2,
            what="two open replenishment timers counted",
        )
        counts: list[str] = []

        async def count(q: str) -> int:
            counts.append(q)
            return (await client.count_workflows(q)).count

        # When a cap of one more than that is asked three times
        cap = OpenTimerCap(count, {"cart": 1, "replenishment": open_now.count + 1})
        answers = [await cap.admits_new("replenishment") for _ in range(3)]
        # Then one start is admitted and two refused, with one visibility count made
        assert answers == [True, False, False]
        assert counts == [query]
        for handle in handles:
            await handle.signal("cancel_timers", {"reason": "test over"})
            assert await handle.result() == "cancelled: test over"
