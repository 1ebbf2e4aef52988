"""`ct-insider dlq list|show|retry|purge`: the dead-letter store for operators.

A letter is a record a delivery path (backfill, delta, catalog, realtime) could not
deliver (ct_insider/deadletters.py). Retry re-drives it:
- a realtime (journey) letter goes back to its journey shard, marked as a re-drive: the
  shard delivers it even though it has seen its key, and removes the letter once Insider
  took it;
- a sync letter (backfill, delta, catalog) is re-driven by a RedriveWorkflow on the worker:
  it reads the record again from commercetools and sends it through the normal sender.
Either way a letter refused again stays, with one more attempt and the new reason.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import Client

from bridge.commit import ShardCommitter
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import PATHS, DeadLetter, DeadLetterStore
from ct_insider.journeys.signals import JourneySignal
from ct_insider.sync.redrive import RedriveResult, is_sync_letter
from starters.output import (
    EXIT_CODES_HELP,
    ExitCode,
    Unreachable,
    UsageError,
    add_json_flag,
    fail,
    print_json,
    stdout,
    table,
)
from starters.watch import watched
from workflows.redrive import RedriveInput, RedriveWorkflow, redrive_workflow_id

# How long `dlq retry` waits for the re-drive workflow of sync letters.
DEFAULT_WAIT_SECONDS = 300.0


class RedriveReport(BaseModel):
    redriven: list[str] = Field(default_factory=list)
    not_redrivable: list[str] = Field(default_factory=list)  # no payload to send again
    missing: list[str] = Field(default_factory=list)


async def chosen(
    store: DeadLetterStore,
    keys: Sequence[str],
    every: bool,
    entity: str | None = None,
    path: str | None = None,
) -> list[DeadLetter]:
    if every:
        return await store.list(entity, path=path)
    found = [await store.get(key) for key in keys]
    return [letter for letter in found if letter is not None]


async def redrive(
    store: DeadLetterStore,
    client: Client,
    journey_task_queue: str,
    shards: int,
    keys: Sequence[str] = (),
    *,
    every: bool = False,
) -> RedriveReport:
    report = RedriveReport()
    letters = await chosen(store, keys, every)
    report.missing = sorted(set(keys) - {letter.key for letter in letters})
    signals: list[JourneySignal] = []
    for letter in letters:
        payload = (letter.redrive or {}).get("signal")
        if payload is None:
            report.not_redrivable.append(letter.key)
            continue
        signals.append(
            JourneySignal.model_validate(payload).model_copy(
                update={"redrive_of": f"{letter.key}@{letter.version}"}
            )
        )
        report.redriven.append(letter.key)
    if signals:
        committer = ShardCommitter(client, journey_task_queue, shards=shards, window_seconds=0)
        await committer.commit(signals)
    return report


class RetryReport(BaseModel):
    """What `dlq retry` did: journey letters handed to their shards (they leave the store
    once delivered), sync letters re-driven by a workflow (already settled)."""

    journeys: RedriveReport = Field(default_factory=RedriveReport)
    sync: RedriveResult = Field(default_factory=RedriveResult)
    workflow_id: str | None = None  # the RedriveWorkflow, when sync letters were re-driven
    missing: list[str] = Field(default_factory=list)  # keys named that are not in the store

    @property
    def failed(self) -> bool:
        """Something named is still not delivered: refused again, not found, or a letter
        with nothing to send again (only a purge removes it)."""
        return bool(
            self.sync.refused
            or self.missing
            or self.journeys.missing
            or self.sync.missing
            or self.journeys.not_redrivable
            or self.sync.not_redrivable
        )


class RedriveStillRunning(Exception):
    """The re-drive workflow did not finish in time (no worker on its task queue?)."""

    def __init__(self, workflow_id: str, task_queue: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"re-drive workflow {workflow_id} still running; is a worker polling task "
            f"queue {task_queue}? (it goes on once one is; see the Temporal UI)"
        )


async def redrive_sync(
    client: Client,
    task_queue: str,
    letters: Sequence[DeadLetter],
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> tuple[str, RedriveResult]:
    """Re-drive sync letters through a RedriveWorkflow on the worker; waits for its end."""
    keys = [letter.key for letter in letters]
    entities = {letter.entity for letter in letters}
    customers = {letter.record_id for letter in letters if letter.entity == "customer"}
    params = RedriveInput(
        keys=keys,
        entity=entities.pop() if len(entities) == 1 else None,
        customer_id=customers.pop() if len(customers) == 1 and len(letters) == 1 else None,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    handle = await client.start_workflow(
        RedriveWorkflow.run,
        params,
        id=redrive_workflow_id(stamp, keys),
        task_queue=task_queue,
    )
    try:
        return handle.id, await asyncio.wait_for(
            watched(client, handle.id, handle.result()), wait_seconds
        )
    except TimeoutError:
        raise RedriveStillRunning(handle.id, task_queue) from None


async def retry(
    store: DeadLetterStore,
    client: Client,
    *,
    task_queue: str,
    journey_task_queue: str,
    shards: int,
    keys: Sequence[str] = (),
    every: bool = False,
    entity: str | None = None,
    path: str | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> RetryReport:
    """`dlq retry`: each chosen letter back through the path that can deliver it."""
    letters = await chosen(store, keys, every, entity, path)
    report = RetryReport()
    sync_letters = [letter for letter in letters if is_sync_letter(letter)]
    journey_keys = [letter.key for letter in letters if not is_sync_letter(letter)]
    if journey_keys:
        report.journeys = await redrive(store, client, journey_task_queue, shards, journey_keys)
    if sync_letters:
        report.workflow_id, report.sync = await redrive_sync(
            client, task_queue, sync_letters, wait_seconds
        )
    if not every:
        report.missing = sorted(set(keys) - {letter.key for letter in letters})
    return report


def summary(letter: DeadLetter) -> dict[str, Any]:
    """What `list` shows: no payload (it may hold personal data)."""
    return {
        "key": letter.key,
        "entity": letter.entity,
        "record_id": letter.record_id,
        "path": letter.path_name,
        "attempts": letter.attempts,
        "first_seen": letter.first_seen.isoformat(),
        "last_seen": letter.last_seen.isoformat(),
        "run": letter.run,
        "market": letter.market,
        "reasons": letter.reasons,
        "redrivable": is_sync_letter(letter) or bool((letter.redrive or {}).get("signal")),
    }


def how_to_redrive(letter: DeadLetter) -> str:
    """What `dlq retry <key>` will do with this letter, in words."""
    if is_sync_letter(letter):
        redrive = letter.redrive or {}
        return (
            f"fix the cause (see the reason), then `ct-insider dlq retry {letter.key}`: it reads "
            f"{redrive['resource']} {redrive['id']} again from commercetools and sends it "
            "the normal way; the letter is removed once Insider takes it"
        )
    if (letter.redrive or {}).get("signal"):
        return (
            f"fix the cause (see the reason), then `ct-insider dlq retry {letter.key}`: the "
            "journey signal goes back to its shard, and the letter is removed once delivered"
        )
    return "nothing to send again: `ct-insider dlq purge` it once understood"


def explain(letter: DeadLetter) -> dict[str, Any]:
    return {**summary(letter), "how_to_redrive": how_to_redrive(letter)}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="list, inspect, re-drive and purge records that could not be delivered",
        epilog="example: ct-insider dlq list --path backfill\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="action", required=True)

    def action(name: str, text: str, example: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(
            name,
            help=text,
            epilog=f"example: {example}\n{EXIT_CODES_HELP}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_json_flag(parser)
        return parser

    listing = action("list", "the dead letters, oldest first", "ct-insider dlq list --path delta")
    _add_filters(listing)
    listing.add_argument("--limit", type=int)
    listing.set_defaults(handler=run_list)
    show = action(
        "show", "one dead letter: why, which run, how to re-drive", "ct-insider dlq show <key>"
    )
    show.add_argument("key")
    show.set_defaults(handler=run_show)
    for name, text, handler in (
        ("retry", "deliver again (after fixing the cause)", run_retry),
        ("purge", "delete", run_purge),
    ):
        chosen_action = action(
            name, f"{text} the named dead letters", f"ct-insider dlq {name} --all --entity customer"
        )
        chosen_action.add_argument("keys", nargs="*")
        chosen_action.add_argument(
            "--all", action="store_true", help=f"{text.split(' (')[0]} every (matching) letter"
        )
        _add_filters(chosen_action)
        chosen_action.set_defaults(handler=handler)
    actions.choices["retry"].add_argument(
        "--wait-seconds",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help="how long to wait for the re-drive workflow of sync letters",
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--entity",
        help="only this entity (customer, order, catalog-item, storefront-event, notification)",
    )
    parser.add_argument("--path", choices=PATHS, help="only letters of this delivery path")


def _store_client() -> CommercetoolsClient:
    from ct_insider.config import CommercetoolsSettings, load

    return CommercetoolsClient(load(CommercetoolsSettings))


def _chosen_keys(args: argparse.Namespace) -> None:
    if not (args.keys or args.all):
        raise UsageError("name the letters' keys, or --all")
    if args.keys and (args.all or args.entity or args.path):
        raise UsageError("either keys, or --all with --entity/--path filters")


async def run_list(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    async with _store_client() as ct:
        letters = await DeadLetterStore(ct).list(args.entity, args.limit, path=args.path)
    if args.json:
        print_json([summary(letter) for letter in letters])
        return ExitCode.OK
    columns = ("key", "entity", "record", "path", "tries", "last seen", "reason")
    rows = [
        (
            letter.key,
            letter.entity,
            letter.record_id,
            letter.path_name,
            letter.attempts,
            letter.last_seen.isoformat(timespec="seconds"),
            "; ".join(letter.reasons)[:100],
        )
        for letter in letters
    ]
    stdout().print(table(f"{len(rows)} dead letter(s)", columns, rows))
    return ExitCode.OK


async def run_show(args: argparse.Namespace) -> int:
    async with _store_client() as ct:
        letter = await DeadLetterStore(ct).get(args.key)
    if letter is None:
        fail(f"no dead letter {args.key}")
        return ExitCode.FAILURES
    shown = explain(letter)
    if args.json:
        print_json(shown)
        return ExitCode.OK
    rows = [(name, _text(value)) for name, value in shown.items()]
    stdout().print(table(f"dead letter {letter.key}", ("field", "value"), rows))
    return ExitCode.OK


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


async def run_purge(args: argparse.Namespace) -> int:
    _chosen_keys(args)
    async with _store_client() as ct:
        store = DeadLetterStore(ct)
        letters = await chosen(store, args.keys, args.all, args.entity, args.path)
        await store.delete([letter.key for letter in letters])
    purged = [letter.key for letter in letters]
    missing = sorted(set(args.keys) - set(purged))
    if args.json:
        print_json({"purged": purged, "missing": missing})
    else:
        stdout().print(f"purged {len(purged)} dead letter(s); not found {len(missing)}")
    return ExitCode.FAILURES if missing else ExitCode.OK


async def run_retry(args: argparse.Namespace) -> int:
    from bridge.commit import TemporalUnavailable
    from ct_insider.config import TemporalSettings, load
    from ct_insider.temporal import connect
    from starters.watch import require_search_attributes

    _chosen_keys(args)
    temporal = load(TemporalSettings)
    async with _store_client() as ct:
        client = await connect(temporal)
        await require_search_attributes(client)
        try:
            report = await retry(
                DeadLetterStore(ct),
                client,
                task_queue=temporal.task_queue,
                journey_task_queue=temporal.journey_task_queue,
                shards=temporal.journey_shards,
                keys=args.keys,
                every=args.all,
                entity=args.entity,
                path=args.path,
                wait_seconds=args.wait_seconds,
            )
        except RedriveStillRunning as exc:
            fail(f"dlq retry: {exc}")
            return ExitCode.FAILURES
        except TemporalUnavailable as exc:
            raise Unreachable(
                "Temporal", f"it did not take the re-drive ({exc}); try again"
            ) from None
    if args.json:
        print_json(report)
    else:
        sync, journeys = report.sync, report.journeys
        stdout().print(
            f"sync letters: delivered {len(sync.delivered)}, refused again {len(sync.refused)} "
            f"(kept, one more attempt), record gone {len(sync.gone)}"
            + (f" (workflow {report.workflow_id})" if report.workflow_id else ""),
            markup=False,
        )
        stdout().print(
            f"journey letters: handed to their shards {len(journeys.redriven)} (each leaves "
            f"the store once delivered)",
            markup=False,
        )
        not_redrivable = [*journeys.not_redrivable, *sync.not_redrivable]
        if not_redrivable:
            stdout().print(
                f"nothing to send again (purge once understood): {', '.join(not_redrivable)}",
                markup=False,
            )
        missing = [*report.missing, *journeys.missing, *sync.missing]
        if missing:
            stdout().print(f"not found: {', '.join(missing)}", markup=False)
    return ExitCode.FAILURES if report.failed else ExitCode.OK
