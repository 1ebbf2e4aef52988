"""`ct-insider timers list|cancel [--kind cart|replenishment] [--json]`: open timer workflows.

Timer workflows (cart recovery, replenishment) keep the contract of ct_insider/timers/kinds.py:
they carry `CtTimerKind` and `CtTimerDueAt`, answer the timers query and end on the cancel
signal. `list` counts each kind's open ones and lists them from Temporal visibility (no
workflow is touched), soonest due first among those listed (visibility returns `--limit` of
them in its own order: beyond the limit, sooner ones may be left out, and the listing says it
is truncated), and asks the soonest `--query` of them what they have armed (a query each: it
needs a worker). `cancel` sends the cancel signal: to the named
workflows, or to every open one of a kind with `--all --kind K --yes`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.config import TimerCapSettings, load
from ct_insider.search_attributes import TIMER_DUE_AT, TIMER_KIND
from ct_insider.timers.cap import caps_of, open_timers_query
from ct_insider.timers.kinds import (
    CANCEL_SIGNAL,
    TIMER_KINDS,
    TIMERS_QUERY,
    ArmedTimer,
    CancelTimers,
    TimerKind,
)
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    UsageError,
    add_json_flag,
    print_json,
    stdout,
    table,
)

DEFAULT_LIMIT = 100  # workflows listed per kind
DEFAULT_QUERIED = 20  # of those, asked what they have armed (one query each)
QUERY_TIMEOUT = timedelta(seconds=5)  # a query waits for a worker; no worker: say so
SIGNALS_IN_FLIGHT = 20  # `cancel --all`: signals sent at once


class KindCount(BaseModel):
    kind: TimerKind
    open: int
    cap: int


class TimerRow(BaseModel):
    workflow_id: str
    kind: TimerKind
    due_at: datetime | None  # CtTimerDueAt: when its next timer fires; None: none armed
    started_at: datetime
    armed: list[ArmedTimer] | None = None  # what the timers query answered (when asked)
    query_error: str | None = None  # why asking failed (e.g. no worker answered in time)


class TimersListing(BaseModel):
    counts: list[KindCount]
    timers: list[TimerRow]
    # A kind has more open workflows than were listed (see --limit).
    truncated: bool = False


class CancelReport(BaseModel):
    cancelled: list[str] = Field(default_factory=list)
    not_found: list[str] = Field(default_factory=list)  # no such workflow
    not_running: list[str] = Field(default_factory=list)  # it had ended already
    not_a_timer: list[str] = Field(default_factory=list)  # no CtTimerKind (or another kind)

    @property
    def failed(self) -> bool:
        return bool(self.not_found or self.not_running or self.not_a_timer)


def _row(execution: WorkflowExecution, kind: TimerKind) -> TimerRow:
    attributes = execution.typed_search_attributes
    return TimerRow(
        workflow_id=execution.id,
        kind=kind,
        due_at=attributes.get(TIMER_DUE_AT),
        started_at=execution.start_time,
    )


async def _ask(client: Client, row: TimerRow) -> None:
    handle = client.get_workflow_handle(row.workflow_id)
    try:
        row.armed = await handle.query(
            TIMERS_QUERY, result_type=list[ArmedTimer], rpc_timeout=QUERY_TIMEOUT
        )
    except (RPCError, WorkflowQueryFailedError) as exc:  # no worker in time, unknown query
        row.query_error = f"{type(exc).__name__}: {exc}"[:200]


async def list_timers(
    client: Client,
    kinds: Sequence[TimerKind],
    caps: dict[TimerKind, int],
    *,
    limit: int = DEFAULT_LIMIT,
    queried: int = DEFAULT_QUERIED,
) -> TimersListing:
    """Each kind's count and at most `limit` of its open workflows (soonest due first among
    those visibility returned), the first `queried` of them with what they have armed."""
    counts: list[KindCount] = []
    rows: list[TimerRow] = []
    truncated = False
    for kind in kinds:
        query = open_timers_query(kind)
        count = (await client.count_workflows(query)).count
        counts.append(KindCount(kind=kind, open=count, cap=caps[kind]))
        listed = [_row(e, kind) async for e in client.list_workflows(query, limit=limit)]
        truncated = truncated or count > len(listed)
        rows.extend(listed)
    rows.sort(key=lambda r: (r.due_at.timestamp() if r.due_at else float("inf"), r.workflow_id))
    await asyncio.gather(*(_ask(client, row) for row in rows[:queried]))
    return TimersListing(counts=counts, timers=rows, truncated=truncated)


async def _cancel_one(
    client: Client, workflow_id: str, kind: TimerKind | None, reason: str, report: CancelReport
) -> None:
    handle = client.get_workflow_handle(workflow_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        report.not_found.append(workflow_id)
        return
    found = described.typed_search_attributes.get(TIMER_KIND)
    if found not in TIMER_KINDS or (kind is not None and found != kind):
        report.not_a_timer.append(workflow_id)
        return
    if described.status != WorkflowExecutionStatus.RUNNING:
        report.not_running.append(workflow_id)
        return
    try:
        await handle.signal(CANCEL_SIGNAL, CancelTimers(reason=reason))
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        report.not_running.append(workflow_id)  # it ended between describe and signal
        return
    report.cancelled.append(workflow_id)


async def cancel_timers(
    client: Client, workflow_ids: Sequence[str], reason: str, *, kind: TimerKind | None = None
) -> CancelReport:
    """Send the cancel signal to each named timer workflow (of `kind`, when given)."""
    report = CancelReport()
    # SIGNALS_IN_FLIGHT senders take the ids in turn: a cap's worth of ids (250,000) never
    # becomes as many coroutines at once.
    queue = iter(dict.fromkeys(workflow_ids))

    async def sender() -> None:
        for workflow_id in queue:
            await _cancel_one(client, workflow_id, kind, reason, report)

    await asyncio.gather(*(sender() for _ in range(SIGNALS_IN_FLIGHT)))
    for names in (report.cancelled, report.not_found, report.not_running, report.not_a_timer):
        names.sort()
    return report


async def open_workflow_ids(client: Client, kind: TimerKind) -> list[str]:
    return [e.id async for e in client.list_workflows(open_timers_query(kind))]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    timers = commands.add_parser(
        "timers",
        help="list and cancel open timer workflows (cart recovery, replenishment)",
        description=__doc__,
        epilog="example: ct-insider timers list --kind cart\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = timers.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list",
        help="count and list open timer workflows (soonest due first of those listed)",
        epilog="example: ct-insider timers list --kind cart --json\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--kind", choices=TIMER_KINDS, help="only this kind")
    listing.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"workflows listed per kind (default {DEFAULT_LIMIT}; the count is exact)",
    )
    listing.add_argument(
        "--query",
        type=int,
        default=DEFAULT_QUERIED,
        help="ask the soonest due N workflows what they have armed (a query each, answered "
        f"by a worker; default {DEFAULT_QUERIED}, 0: none)",
    )
    add_json_flag(listing)
    listing.set_defaults(handler=run_list)
    cancel = actions.add_parser(
        "cancel",
        help="end timer workflows without sending what their timers would have sent",
        epilog="example: ct-insider timers cancel --all --kind cart --yes\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cancel.add_argument("workflow_ids", nargs="*", help="workflow ids (e.g. cart-<cart id>)")
    cancel.add_argument("--kind", choices=TIMER_KINDS, help="with --all: the kind to cancel")
    cancel.add_argument("--all", action="store_true", help="every open timer of --kind")
    cancel.add_argument(
        "--yes", action="store_true", help="confirm --all (without it, only the count is shown)"
    )
    cancel.add_argument("--reason", default="cancelled by an operator", help="kept in results")
    add_json_flag(cancel)
    cancel.set_defaults(handler=run_cancel)


async def _client() -> Client:
    from ct_insider.config import TemporalSettings
    from ct_insider.temporal import connect

    return await connect(load(TemporalSettings))


async def run_list(args: argparse.Namespace) -> int:
    if args.limit < 1 or args.query < 0:
        raise UsageError("--limit must be at least 1, --query at least 0")
    kinds: list[TimerKind] = [args.kind] if args.kind else list(TIMER_KINDS)
    listing = await list_timers(
        await _client(),
        kinds,
        caps_of(load(TimerCapSettings)),
        limit=args.limit,
        queried=args.query,
    )
    if args.json:
        print_json(listing)
        return ExitCode.OK
    console = stdout()
    console.print(
        table(
            "open timer workflows",
            ("kind", "open", "cap"),
            [(c.kind, c.open, c.cap) for c in listing.counts],
        )
    )
    rows = [
        (
            row.workflow_id,
            row.kind,
            row.due_at.isoformat(timespec="seconds") if row.due_at else "-",
            row.started_at.isoformat(timespec="seconds"),
            "; ".join(f"{t.what} at {t.due_at.isoformat(timespec='seconds')}" for t in row.armed)
            if row.armed is not None
            else (row.query_error or "(not asked)"),
        )
        for row in listing.timers
    ]
    console.print(
        table(f"{len(rows)} listed", ("workflow", "kind", "due", "started", "armed"), rows)
    )
    if listing.truncated:
        console.print("more are open than listed: raise --limit, or see the Temporal UI")
    return ExitCode.OK


async def run_cancel(args: argparse.Namespace) -> int:
    if args.all == bool(args.workflow_ids):
        raise UsageError("name the workflow ids, or --all --kind KIND")
    if args.all and args.kind is None:
        raise UsageError("--all needs --kind (cart or replenishment)")
    client = await _client()
    if args.all:
        ids = await open_workflow_ids(client, args.kind)
        if not args.yes:
            raise UsageError(
                f"{len(ids)} open {args.kind} timer workflow(s) would be cancelled: "
                "add --yes to cancel them"
            )
    else:
        ids = list(args.workflow_ids)
    report = await cancel_timers(client, ids, args.reason, kind=args.kind)
    if args.json:
        print_json(report)
    else:
        stdout().print(
            f"cancelled {len(report.cancelled)}; not found {len(report.not_found)}, "
            f"already ended {len(report.not_running)}, not a timer workflow "
            f"{len(report.not_a_timer)}",
            markup=False,
        )
    # `--all` names nothing: one that ended meanwhile is no failure.
    return ExitCode.FAILURES if report.failed and not args.all else ExitCode.OK
