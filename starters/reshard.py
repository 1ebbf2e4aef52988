"""`ct-insider reshard [--shards N] [--wait]`: change the number of journey shards while
events flow (docs/design/realtime.md#resharding).

Without --shards: the layout the bridges route by, and a reshard in progress. With it:
JourneyLayoutWorkflow (created from TEMPORAL_JOURNEY_SHARDS the first time) announces the
new layout to every shard, and it takes effect `--lead` seconds later; the old shards hand
off their memory `--grace` seconds after that (a worker must be running: it announces the
change). `--wait` follows it until every old shard handed off.
"""

from __future__ import annotations

import argparse
import asyncio

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from bridge.layout import read_layout
from ct_insider.journeys.layout import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_LEAD_SECONDS,
    MAX_SHARDS,
    MIN_LEAD_SECONDS,
    Layout,
    LayoutStatus,
    layout_workflow_id,
)
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    UsageError,
    add_json_flag,
    print_json,
    stdout,
)
from starters.watch import require_search_attributes, watched
from workflows.journey_layout import (
    JourneyLayoutWorkflow,
    LayoutInput,
    ReshardRequest,
    layout_memo,
)
from workflows.journey_shard import shard_workflow_id

POLL_SECONDS = 1.0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "reshard",
        help="change the number of journey shards while events flow, or show the layout",
        description=__doc__,
        epilog="example: ct-insider reshard --shards 8 --wait\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shards", type=int, help=f"the new number of shards (1-{MAX_SHARDS})")
    parser.add_argument(
        "--lead",
        type=float,
        default=DEFAULT_LEAD_SECONDS,
        help=f"seconds between announcing and taking effect (at least {MIN_LEAD_SECONDS:.0f})",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_SECONDS,
        help="seconds after taking effect before old shards hand off",
    )
    parser.add_argument("--wait", action="store_true", help="follow it until it is complete")
    add_json_flag(parser)
    parser.set_defaults(handler=run_reshard)


def reshard_request(args: argparse.Namespace) -> ReshardRequest:
    if not 1 <= args.shards <= MAX_SHARDS:
        raise UsageError(f"--shards must be 1 to {MAX_SHARDS}")
    if args.lead < MIN_LEAD_SECONDS:
        # The bridges read the layout every few seconds: a shorter lead could take effect
        # before one of them knew it.
        raise UsageError(f"--lead must be at least {MIN_LEAD_SECONDS:.0f} seconds")
    if args.grace < 0:
        raise UsageError("--grace cannot be negative")
    return ReshardRequest(shards=args.shards, lead_seconds=args.lead, grace_seconds=args.grace)


async def running_run(client: Client, workflow_id: str) -> str | None:
    """The id of the workflow's run while one is running, else None."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description.run_id if description.status == WorkflowExecutionStatus.RUNNING else None


async def running(client: Client, workflow_id: str) -> bool:
    return await running_run(client, workflow_id) is not None


async def check_configured_count(client: Client, task_queue: str, configured: int) -> None:
    """Before the first reshard, the layout is created from this process's
    TEMPORAL_JOURNEY_SHARDS and the bridges route by it at once: a count other than the one
    they route by today would move identities with no handoff (duplicates, deletions not
    honoured). The running shards tell: shard `configured` must not run, and shard
    `configured - 1` must run once any does."""
    if await running(client, layout_workflow_id(task_queue)):
        return  # the layout is the layout workflow's, whatever this process is configured with
    beyond = await running(client, shard_workflow_id(task_queue, configured))
    short = await running(client, shard_workflow_id(task_queue, 0)) and not await running(
        client, shard_workflow_id(task_queue, configured - 1)
    )
    if beyond or short:
        raise UsageError(
            f"TEMPORAL_JOURNEY_SHARDS is {configured} here, but the running journey shards "
            f"say the bridges route by {'more' if beyond else 'fewer'}: run reshard with the "
            "bridges' own configuration"
        )


async def reshard(
    client: Client, task_queue: str, configured: int, request: ReshardRequest
) -> LayoutStatus:
    """Schedule the change; raises UsageError when the layout workflow refuses it."""
    await check_configured_count(client, task_queue, configured)
    initial = LayoutStatus(current=Layout(shards=configured))
    handle = await client.start_workflow(
        JourneyLayoutWorkflow.run,
        LayoutInput(status=initial),
        id=layout_workflow_id(task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        memo=layout_memo(initial),
    )
    try:
        # Accepted only by a worker running the workflow: watched, not to wait on silently.
        return await watched(
            client, handle.id, handle.execute_update(JourneyLayoutWorkflow.reshard, request)
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise UsageError(getattr(cause, "message", None) or str(cause)) from None


async def until_complete(
    client: Client, task_queue: str, configured: int, epoch: int, *, show: bool
) -> LayoutStatus:
    shown = -1
    while True:
        status = await read_layout(client, task_queue, configured)
        if status.current.epoch >= epoch:
            return status
        if show and status.change is not None and len(status.handed_off) != shown:
            shown = len(status.handed_off)
            total = len(status.change.handing_off())
            stdout().print(f"handed off: {shown} of {total} old shards", markup=False)
        await asyncio.sleep(POLL_SECONDS)


def describe(status: LayoutStatus) -> str:
    current = status.current
    line = f"journey layout {current.epoch}: {current.shards} shards"
    if status.next is not None and status.change is not None:
        line += (
            f"; layout {status.next.epoch} ({status.next.shards} shards) takes effect at "
            f"{status.next.effective_at:%Y-%m-%d %H:%M:%S} UTC, old shards hand off from "
            f"{status.change.handoff_at:%H:%M:%S} (handed off: {len(status.handed_off)} of "
            f"{len(status.change.handing_off())})"
        )
    return line


async def run_reshard(args: argparse.Namespace) -> int:
    from ct_insider.config import TemporalSettings, load
    from ct_insider.temporal import connect

    request = reshard_request(args) if args.shards is not None else None
    temporal = load(TemporalSettings)
    client = await connect(temporal)
    if request is not None:
        await require_search_attributes(client)
    queue = temporal.journey_task_queue
    if request is None:
        status = await read_layout(client, queue, temporal.journey_shards)
    else:
        status = await reshard(client, queue, temporal.journey_shards, request)
        if args.wait:
            assert status.next is not None
            if not args.json:
                stdout().print(describe(status), markup=False)
            status = await watched(
                client,
                layout_workflow_id(queue),
                until_complete(
                    client, queue, temporal.journey_shards, status.next.epoch, show=not args.json
                ),
            )
    if args.json:
        print_json(status)
    else:
        stdout().print(describe(status), markup=False)
    return ExitCode.OK
