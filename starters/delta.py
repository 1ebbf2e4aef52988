"""Start the long-running delta sync workflows and show where they are."""

from __future__ import annotations

import argparse

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from ct_insider import resources
from ct_insider.sync.watermarks import StoredWatermark
from starters.backfill import run_backfill
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    UsageError,
    add_json_flag,
    print_json,
    stdout,
    table,
    timestamp,
)
from workflows.delta import DeltaStatus, DeltaSyncInput, DeltaSyncWorkflow, delta_workflow_id

# The delta sync entities, from the registry (ct_insider/resources.py).
DELTA_ENTITIES = resources.DELTA_ENTITIES


async def start_delta(
    client: Client, task_queue: str, params: DeltaSyncInput
) -> WorkflowHandle[DeltaSyncWorkflow, None]:
    """One delta workflow per entity: starting it again attaches to the running one."""
    return await client.start_workflow(
        DeltaSyncWorkflow.run,
        params,
        id=delta_workflow_id(params.entity),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def delta_status(client: Client, entity: str) -> DeltaStatus | None:
    """The running delta workflow's status, or None when it is not running."""
    from starters.watermarks import delta_running

    # A query to a closed run waits for a worker to replay it: ask the server first.
    if not await delta_running(client, entity):
        return None
    handle = client.get_workflow_handle(delta_workflow_id(entity))
    try:
        return await handle.query(DeltaSyncWorkflow.status)
    except RPCError:
        return None


def status_rows(statuses: dict[str, DeltaStatus | None]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for entity, status in statuses.items():
        if status is None:
            rows.append((entity, "not running", None, None, None, None, None, None))
            continue
        last = status.last_run
        rows.append(
            (
                entity,
                "running",
                status.watermark.isoformat() if status.watermark else None,
                status.windows,
                status.totals.sent,
                status.totals.events,
                status.totals.rejected,
                (
                    f"{last.window.slug()}: processed {last.stats.processed}, sent "
                    f"{last.stats.sent}, skipped {last.stats.skipped}, rejected "
                    f"{last.stats.rejected}"
                )
                if last
                else None,
            )
        )
    return rows


def print_status(statuses: dict[str, DeltaStatus | None]) -> None:
    columns = (
        "entity",
        "state",
        "watermark",
        "windows",
        "sent",
        "events",
        "rejected",
        "last window",
    )
    stdout().print(table("delta syncs", columns, status_rows(statuses)))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sync = commands.add_parser("sync", help="delta syncs and the full catalog sync")
    modes = sync.add_subparsers(dest="mode", required=True)
    delta = modes.add_parser(
        "delta",
        help="start the long-running delta sync (or attach)",
        epilog="example: ct-insider sync delta all --interval 60\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    delta.add_argument("target", choices=[*DELTA_ENTITIES, "all"])
    delta.add_argument(
        "--since",
        type=timestamp,
        help="first window start (default: the stored watermark a previous delta or a "
        "completed backfill left; refused when there is none)",
    )
    delta.add_argument("--interval", type=float, default=60.0, help="seconds between windows")
    delta.add_argument("--margin", type=float, default=15.0, help="seconds behind now")
    delta.add_argument("--overlap", type=float, default=60.0, help="seconds re-read per window")
    add_json_flag(delta)
    delta.set_defaults(handler=run_delta)
    catalog = modes.add_parser(
        "catalog",
        help="sync the whole catalog, every market",
        epilog="example: ct-insider sync catalog --wait\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    catalog.add_argument(
        "--full",
        action="store_true",
        help="send every item again (default: only what differs from what Insider holds)",
    )
    catalog.add_argument("--wait", action="store_true", help="follow progress until it finishes")
    add_json_flag(catalog)
    catalog.set_defaults(handler=run_backfill, target="catalog")

    status = commands.add_parser(
        "status",
        help="show the delta sync watermarks and last windows",
        epilog="example: ct-insider status --json\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_json_flag(status)
    status.set_defaults(handler=run_status)


async def run_delta(args: argparse.Namespace) -> int:
    from ct_insider.config import TemporalSettings, load
    from ct_insider.temporal import connect
    from starters.watch import require_search_attributes
    from starters.watermarks import delta_running, resume_point, stored_watermarks

    temporal = load(TemporalSettings)
    entities = DELTA_ENTITIES if args.target == "all" else (args.target,)
    try:
        inputs = [
            DeltaSyncInput(
                entity=entity,
                watermark=args.since,
                interval_seconds=args.interval,
                safety_margin_seconds=args.margin,
                overlap_seconds=args.overlap,
            )
            for entity in entities
        ]
    except ValueError as exc:
        raise UsageError(f"invalid delta sync: {exc}") from None
    client = await connect(temporal)
    await require_search_attributes(client)
    running = {p.entity: await delta_running(client, p.entity) for p in inputs}
    stored = await stored_watermarks([p.entity for p in inputs]) if args.since is None else {}
    points = {
        p.entity: resume_point(
            p.entity, running=running[p.entity], since=args.since, stored=stored.get(p.entity)
        )
        for p in inputs
    }
    nowhere = [point for point in points.values() if point.source == "none"]
    if nowhere:  # refused before any starts: "from now" would lose what changed meanwhile
        raise UsageError("; ".join(point.sentence() for point in nowhere))
    started = []
    for params in inputs:
        point = points[params.entity]
        handle = await start_delta(client, temporal.task_queue, params)
        started.append(
            {
                "entity": params.entity,
                "workflow_id": handle.id,
                "run_id": handle.result_run_id,
                "resumes_from": point.model_dump(mode="json"),
            }
        )
        if not args.json:
            stdout().print(
                f"{params.entity} delta sync: workflow {handle.id} (run {handle.result_run_id}), "
                f"{point.sentence()}"
            )
    if args.json:
        print_json(started)
    return ExitCode.OK


async def run_status(args: argparse.Namespace) -> int:
    from ct_insider.config import TemporalSettings, load
    from ct_insider.temporal import connect
    from starters.watermarks import stored_watermarks

    client = await connect(load(TemporalSettings))
    statuses = {entity: await delta_status(client, entity) for entity in DELTA_ENTITIES}
    # Where a delta started again resumes from, also when none runs.
    stored = await stored_watermarks(DELTA_ENTITIES)
    if args.json:
        print_json(
            {
                entity: {
                    **(status.model_dump(mode="json") if status else {}),
                    "running": status is not None,
                    "stored_watermark": _dumped(stored[entity]),
                }
                for entity, status in statuses.items()
            }
        )
    else:
        print_status(statuses)
        rows = [
            (e, w.watermark.isoformat() if w else None, w.workflow_id if w else None)
            for e, w in stored.items()
        ]
        columns = ("entity", "resumes from", "written by")
        stdout().print(
            table("stored watermarks (where a delta started again resumes)", columns, rows)
        )
    return ExitCode.OK


def _dumped(stored: StoredWatermark | None) -> dict[str, object] | None:
    return stored.model_dump(mode="json") if stored else None
