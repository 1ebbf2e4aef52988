"""`ct-insider`: the single entry point for operators and developers."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

from ct_insider.config import (
    BridgeSettings,
    CommercetoolsSettings,
    InsiderSettings,
    TemporalSettings,
    load,
)
from ct_insider.logging import configure_logging


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"timestamp needs a timezone (e.g. Z): {value!r}")
    return parsed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ct-insider", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run the Temporal worker")
    worker.add_argument("--mapping", type=Path, help="JSON file of mapping rules")
    worker.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)

    backfill = commands.add_parser("backfill", help="start (or attach to) a historical backfill")
    backfill.add_argument("target", choices=["customers", "orders", "all"])
    backfill.add_argument("--since", type=_timestamp, help="lastModifiedAt lower bound (inclusive)")
    backfill.add_argument("--until", type=_timestamp, help="lastModifiedAt upper bound (exclusive)")
    backfill.add_argument("--batch-size", type=int, default=1_000)
    backfill.add_argument("--wait", action="store_true", help="follow progress until it finishes")

    sync = commands.add_parser("sync", help="delta syncs and the full catalog sync")
    modes = sync.add_subparsers(dest="mode", required=True)
    delta = modes.add_parser("delta", help="start the long-running delta sync (or attach)")
    delta.add_argument("target", choices=["customers", "orders", "catalog", "all"])
    delta.add_argument("--since", type=_timestamp, help="first window start (default: now)")
    delta.add_argument("--interval", type=float, default=60.0, help="seconds between windows")
    delta.add_argument("--margin", type=float, default=15.0, help="seconds behind now")
    delta.add_argument("--overlap", type=float, default=60.0, help="seconds re-read per window")
    catalog = modes.add_parser("catalog", help="sync the whole catalog, every market")
    catalog.add_argument(
        "--full",
        action="store_true",
        help="send every item again (default: only what differs from what Insider holds)",
    )
    catalog.add_argument("--wait", action="store_true", help="follow progress until it finishes")

    commands.add_parser("status", help="show the delta sync watermarks and last windows")

    dlq = commands.add_parser(
        "dlq",
        help="list, inspect, re-drive and purge records that could not be delivered",
        epilog="example: ct-insider dlq list --json; ct-insider dlq retry --all",
    )
    dlq_commands = dlq.add_subparsers(dest="action", required=True)
    dlq_list = dlq_commands.add_parser("list", help="the dead letters, oldest first")
    dlq_list.add_argument("--entity", help="only this entity (storefront-event, customer, order)")
    dlq_list.add_argument("--limit", type=int)
    dlq_show = dlq_commands.add_parser("show", help="one dead letter")
    dlq_show.add_argument("key")
    for name, text in (("retry", "deliver again"), ("purge", "delete")):
        action = dlq_commands.add_parser(name, help=f"{text} the named dead letters")
        action.add_argument("keys", nargs="*")
        action.add_argument("--all", action="store_true", help=f"{text} every dead letter")
    for action in dlq_commands.choices.values():
        action.add_argument("--json", action="store_true", help="machine-readable output")

    commands.add_parser(
        "bridge", help="serve the webhook bridge (BRIDGE_TOKEN, BRIDGE_HOST, BRIDGE_PORT)"
    )

    emulate = commands.add_parser("emulate", help="serve an emulator on 127.0.0.1")
    emulate.add_argument("system", choices=["commercetools", "insider"])
    emulate.add_argument("--port", type=int, required=True)
    emulate.add_argument("--project", default="demo", help="commercetools project key")
    emulate.add_argument("--partner-name", default="demo", help="Insider partner name")
    emulate.add_argument("--api-key", default="ucd-token", help="Insider UCD token")
    emulate.add_argument("--catalog-api-key", default="catalog-token", help="Insider catalog token")

    dev = commands.add_parser("dev", help="run the whole local stack with demo data (make run)")
    dev.add_argument("--state-dir", type=Path, default=Path(".dev"))
    dev.add_argument("--port-offset", type=int, default=0, help="shift every port by N")
    dev.add_argument("--no-wait", action="store_true", help="exit once the demo backfill is done")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, json=args.command != "dev")
    if args.command == "worker":
        return asyncio.run(_worker(args))
    if args.command == "backfill":
        return asyncio.run(_backfill(args))
    if args.command == "sync" and args.mode == "catalog":
        return asyncio.run(_backfill(argparse.Namespace(**vars(args), target="catalog")))
    if args.command == "sync":
        return asyncio.run(_sync(args))
    if args.command == "status":
        return asyncio.run(_status())
    if args.command == "dlq":
        return asyncio.run(_dlq(args))
    if args.command == "bridge":
        from bridge.server import serve

        asyncio.run(
            serve(load(BridgeSettings), load(TemporalSettings), load(CommercetoolsSettings))
        )
        return 0
    if args.command == "emulate":
        return _emulate(args)
    if args.command == "dev":
        from starters.dev import run_dev_stack

        return run_dev_stack(args.state_dir, wait=not args.no_wait, port_offset=args.port_offset)
    raise AssertionError(f"unhandled command {args.command}")


async def _worker(args: argparse.Namespace) -> int:
    from ct_insider.mapping.config import MappingConfigError, load_mapping_config
    from ct_insider.temporal import connect
    from workers.main import run_worker

    temporal = load(TemporalSettings)
    ct = load(CommercetoolsSettings)
    insider = load(InsiderSettings)
    try:
        mapping = load_mapping_config(args.mapping)
    except MappingConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    client = await connect(temporal, with_metrics=True)
    await run_worker(
        client,
        temporal.task_queue,
        temporal.journey_task_queue,
        ct,
        insider,
        mapping,
        args.ready_file,
    )
    return 0


async def _backfill(args: argparse.Namespace) -> int:
    from ct_insider.sync.window import Window
    from ct_insider.temporal import connect
    from starters.backfill import follow, print_report, start_backfill
    from workflows.backfill import BackfillInput

    temporal = load(TemporalSettings)
    try:
        window = Window(since=getattr(args, "since", None), until=getattr(args, "until", None))
        params = BackfillInput(
            target=args.target,
            window=window,
            batch_size=getattr(args, "batch_size", 1_000),
            catalog_mode="full" if getattr(args, "full", True) else "changes",
        )
    except ValueError as exc:
        print(f"invalid backfill: {exc}", file=sys.stderr)
        return 2
    client = await connect(temporal)
    handle = await start_backfill(client, temporal.task_queue, params)
    print(f"backfill workflow {handle.id} (run {handle.result_run_id})")
    if not args.wait:
        return 0
    final = await follow(handle)
    print_report(final)
    return 0


async def _sync(args: argparse.Namespace) -> int:
    from ct_insider.temporal import connect
    from starters.delta import DELTA_ENTITIES, start_delta
    from workflows.delta import DeltaSyncInput

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
        print(f"invalid delta sync: {exc}", file=sys.stderr)
        return 2
    client = await connect(temporal)
    for params in inputs:
        handle = await start_delta(client, temporal.task_queue, params)
        print(f"{params.entity} delta sync: workflow {handle.id} (run {handle.result_run_id})")
    return 0


async def _status() -> int:
    from ct_insider.temporal import connect
    from starters.delta import DELTA_ENTITIES, delta_status, print_status

    client = await connect(load(TemporalSettings))
    for entity in DELTA_ENTITIES:
        print_status(entity, await delta_status(client, entity))
    return 0


async def _dlq(args: argparse.Namespace) -> int:
    import json

    from bridge.commit import TemporalUnavailable
    from ct_insider.commercetools.client import CommercetoolsClient
    from ct_insider.deadletters import DeadLetterStore
    from ct_insider.temporal import connect
    from starters.dlq import chosen, print_letters, redrive, summary

    if args.action in ("retry", "purge") and not (args.keys or args.all):
        print(f"dlq {args.action}: name the letters' keys, or --all", file=sys.stderr)
        return 2
    async with CommercetoolsClient(load(CommercetoolsSettings)) as ct:
        store = DeadLetterStore(ct)
        if args.action == "list":
            print_letters(await store.list(args.entity, args.limit), args.json)
            return 0
        if args.action == "show":
            letter = await store.get(args.key)
            if letter is None:
                print(f"no dead letter {args.key}", file=sys.stderr)
                return 1
            shown = {**summary(letter), "redrive": letter.redrive}
            print(json.dumps(shown, indent=2 if args.json else None, default=str))
            return 0
        if args.action == "purge":
            letters = await chosen(store, args.keys, args.all)
            await store.delete([letter.key for letter in letters])
            print(json.dumps({"purged": [letter.key for letter in letters]}))
            return 0
        temporal = load(TemporalSettings)
        try:
            client = await connect(temporal)
            report = await redrive(
                store,
                client,
                temporal.journey_task_queue,
                temporal.journey_shards,
                args.keys,
                every=args.all,
            )
        except (RuntimeError, TemporalUnavailable) as exc:
            print(
                f"dlq retry: Temporal did not take the re-drive ({exc}); try again", file=sys.stderr
            )
            return 3
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(
            f"re-driven {len(report.redriven)} (each leaves the store once delivered), "
            f"not re-drivable {len(report.not_redrivable)}, not found {len(report.missing)}"
        )
    return 1 if report.missing else 0


def _emulate(args: argparse.Namespace) -> int:
    if args.system == "commercetools":
        import os

        from emulators import commercetools

        commercetools.ensure_installed()
        command = commercetools.command(args.port, args.project)
        os.execv(command[0], command)  # noqa: S606 - replace this process with node, no shell
    import uvicorn

    from emulators.insider.app import EmulatorConfig, create_app

    config = EmulatorConfig(
        partner_name=args.partner_name.lower(),
        api_key=args.api_key,
        catalog_api_key=args.catalog_api_key,
    )
    uvicorn.run(
        create_app(config), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
