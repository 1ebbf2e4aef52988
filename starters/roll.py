"""`ct-insider roll [--wait]`: ask every journey shard to continue-as-new at its next chance.

A shard run keeps the rules it began with (`workflow.patched`) until it continues-as-new,
which a busy shard does every few minutes and a quiet one may not do for days: after an
upgrade, `roll` makes every running shard take up the new version's rules now
(docs/design/realtime.md, "Upgrading"). Run it once every worker runs the new version; not
during a reshard (the shards are busy handing off, and `roll` refuses).

A shard continues once its pending signals fit its carry (it delivers first when they do
not). `--wait` follows each shard until it runs a new run.
"""

from __future__ import annotations

import argparse
import asyncio

from pydantic import BaseModel
from temporalio.client import Client

from bridge.layout import read_layout
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    UsageError,
    add_json_flag,
    print_json,
    stdout,
)
from starters.reshard import running_run
from workflows.journey_shard import JourneyShardWorkflow, shard_workflow_id

POLL_SECONDS = 1.0


class ShardRoll(BaseModel):
    shard: int
    workflow_id: str
    run_before: str | None = None  # None: the shard was not running (nothing to roll)
    run_after: str | None = None  # set once it continued-as-new (`--wait`)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "roll",
        help="ask every journey shard to continue-as-new (after an upgrade)",
        description=__doc__,
        epilog="example: ct-insider roll --wait\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--wait", action="store_true", help="until every shard runs a new run")
    add_json_flag(parser)
    parser.set_defaults(handler=run_roll)


async def roll(client: Client, task_queue: str, configured: int) -> list[ShardRoll]:
    """Signal `roll` to every running shard of the current layout."""
    status = await read_layout(client, task_queue, configured)
    if status.change is not None:
        raise UsageError("a reshard is under way: roll once it is complete")
    rolls = [
        ShardRoll(shard=shard, workflow_id=shard_workflow_id(task_queue, shard))
        for shard in range(status.current.shards)
    ]
    for entry in rolls:
        entry.run_before = await running_run(client, entry.workflow_id)
        if entry.run_before is not None:
            await client.get_workflow_handle(entry.workflow_id, run_id=entry.run_before).signal(
                JourneyShardWorkflow.roll
            )
    return rolls


async def until_rolled(client: Client, rolls: list[ShardRoll], *, show: bool) -> None:
    waiting = [entry for entry in rolls if entry.run_before is not None]
    while waiting:
        for entry in list(waiting):
            run = await running_run(client, entry.workflow_id)
            if run is not None and run != entry.run_before:
                entry.run_after = run
                waiting.remove(entry)
                if show:
                    stdout().print(f"shard {entry.shard}: continued as run {run}", markup=False)
        if waiting:
            await asyncio.sleep(POLL_SECONDS)


async def run_roll(args: argparse.Namespace) -> int:
    from ct_insider.config import TemporalSettings, load
    from ct_insider.temporal import connect

    temporal = load(TemporalSettings)
    client = await connect(temporal)
    rolls = await roll(client, temporal.journey_task_queue, temporal.journey_shards)
    signalled = sum(entry.run_before is not None for entry in rolls)
    if not args.json:
        stdout().print(
            f"asked {signalled} running journey shards of {len(rolls)} to continue-as-new",
            markup=False,
        )
    if args.wait:
        await until_rolled(client, rolls, show=not args.json)
    if args.json:
        print_json(rolls)
    return ExitCode.OK
