"""`ct-insider check customers|orders|catalog`: read Insider back, report drift, repair it."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from temporalio.client import Client, WorkflowHandle

from ct_insider.checks.drift import DriftReport
from ct_insider.resources import CHECK_ENTITIES
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    UsageError,
    add_json_flag,
    report_run,
    stdout,
    table,
    timestamp,
)
from workflows.check import (
    MAX_SAMPLE,
    CheckInput,
    ConsistencyCheckWorkflow,
    check_workflow_id,
)


async def start_check(
    client: Client, task_queue: str, params: CheckInput
) -> WorkflowHandle[ConsistencyCheckWorkflow, DriftReport]:
    return await client.start_workflow(
        ConsistencyCheckWorkflow.run,
        params,
        id=check_workflow_id(params, datetime.now(UTC)),
        task_queue=task_queue,
    )


def outcome(report: DriftReport) -> ExitCode:
    """Drift left in Insider (found and not repaired, duplicates included) is a failure."""
    return ExitCode.FAILURES if report.drift_left else ExitCode.OK


def print_report(report: DriftReport) -> None:
    console = stdout()
    counts = report.counts
    summary = [
        ("compared with", report.source),
        ("sampled / checked / skipped", f"{report.sampled} / {report.checked} / {report.skipped}"),
        ("too recent to judge", report.too_recent),
        ("profile reads (quota units)", f"{report.profile_reads} ({report.units_spent})"),
        (
            "missing / stale / extra / duplicated",
            f"{counts.missing} / {counts.stale} / {counts.extra} / {counts.duplicated}",
        ),
        ("repaired", report.repaired),
    ]
    console.print(table(f"{report.entity} check", ("measure", "value"), summary))
    rows = []
    for drift in report.drifts():
        differences = [f"{f.field}: {f.expected} -> {f.found}" for f in drift.fields]
        if drift.kind in ("duplicated", "extra") and drift.count > 1:
            differences.append(f"{drift.count} copies")
        if drift.detail:
            differences.append(drift.detail)
        rows.append(
            (
                drift.kind,
                drift.record_id,
                drift.item,
                "\n".join(differences),
                "yes" if drift.repaired else "no",
            )
        )
    if rows:
        console.print(table("drift", ("kind", "record", "item", "what differs", "repaired"), rows))
    listed = len(report.drifts())
    if listed < counts.total:
        console.print(f"... and {counts.total - listed} more drifted records (counted above)")
    for failure in report.repair_failures:
        console.print(f"repair failed: {failure}", markup=False, highlight=False)
    for unreadable in report.unreadable:
        console.print(f"not checked: {unreadable}", markup=False, highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help="compare what Insider holds with commercetools; report (and repair) drift",
        epilog="example: ct-insider check orders --sample 100 --since 2026-01-01T00:00:00Z "
        "--repair --wait\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("entity", choices=CHECK_ENTITIES)
    scope = check.add_mutually_exclusive_group()
    scope.add_argument(
        "--sample",
        type=int,
        default=200,
        help=f"check a random sample of this many records (default 200, at most {MAX_SAMPLE})",
    )
    scope.add_argument("--all", action="store_true", help="check every record")
    check.add_argument(
        "--since", type=timestamp, help="only orders placed / records changed since then"
    )
    check.add_argument(
        "--repair", action="store_true", help="send the drifted records again (not duplicates)"
    )
    check.add_argument("--wait", action="store_true", help="wait and print the drift report")
    add_json_flag(check)
    check.set_defaults(handler=run_check)


async def run_check(args: argparse.Namespace) -> int:
    from ct_insider.config import TemporalSettings, load
    from ct_insider.temporal import connect
    from starters.watch import require_search_attributes

    try:
        params = CheckInput(
            entity=args.entity,
            sample=None if args.all else args.sample,
            all=args.all,
            since=args.since,
            repair=args.repair,
        )
    except ValueError as exc:
        raise UsageError(f"invalid check: {exc}") from None
    temporal = load(TemporalSettings)
    client = await connect(temporal)
    await require_search_attributes(client)
    handle = await start_check(client, temporal.task_queue, params)
    report = await report_run(client, handle, "check", args, result_key="report", show=print_report)
    return ExitCode.OK if report is None else outcome(report)
