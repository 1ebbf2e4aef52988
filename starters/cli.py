"""`ct-insider`: the single entry point for operators and developers."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NoReturn

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import FailureError

from ct_insider.config import (
    BridgeSettings,
    CartSettings,
    CommercetoolsSettings,
    ConfigurationError,
    InsiderSettings,
    TemporalSettings,
    load,
)
from ct_insider.logging import configure_logging, configure_pii_fingerprints
from ct_insider.telemetry import configure_telemetry, shutdown_telemetry
from starters.output import EXIT_CODES_HELP, ExitCode, UsageError, fail, unreachable
from starters.watch import WorkflowStuck

# Command groups that live in a module of their own: each has `register(commands)`, which
# adds its parser and sets `handler` (an async function of the parsed arguments -> exit code).
COMMAND_MODULES: tuple[str, ...] = (
    "starters.backfill",
    "starters.delta",
    "starters.schedules",
    "starters.check",
    "starters.dlq",
    "starters.setup",
    "starters.doctor",
    "starters.codec_server",
    "starters.erase",
    "starters.reshard",
    "starters.roll",
    "starters.timers",
    "starters.consume",
)

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ct-insider",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)

    # Servers: they run until stopped and log JSON lines; no --json output of their own.
    worker = commands.add_parser(
        "worker",
        help="run the Temporal worker",
        epilog="example: ct-insider worker --mapping mapping.json",
    )
    worker.add_argument(
        "--mapping",
        type=Path,
        help="JSON file of mapping rules (default: CT_INSIDER_MAPPING_PATH); the example rules "
        "are refused unless CT_INSIDER_MAPPING_ALLOW_EXAMPLE=true",
    )
    worker.add_argument(
        "--ready-file",
        type=Path,
        help="a file written once the worker polls both task queues and removed when it "
        "stops (a container health check)",
    )

    commands.add_parser(
        "bridge",
        help="serve the webhook bridge (BRIDGE_TOKEN, BRIDGE_HOST, BRIDGE_PORT)",
        epilog="example: BRIDGE_TOKEN=... BRIDGE_PORT=8080 ct-insider bridge",
    )

    emulate = commands.add_parser(
        "emulate",
        help="serve an emulator on 127.0.0.1",
        epilog="example: ct-insider emulate insider --port 8090",
    )
    emulate.add_argument("system", choices=["commercetools", "insider"])
    emulate.add_argument("--port", type=int, required=True)
    emulate.add_argument("--project", default="demo", help="commercetools project key")
    emulate.add_argument("--partner-name", default="demo", help="Insider partner name")
    emulate.add_argument("--api-key", default="ucd-token", help="Insider UCD token")
    emulate.add_argument("--catalog-api-key", default="catalog-token", help="Insider catalog token")

    dev = commands.add_parser(
        "dev",
        help="run the whole local stack with demo data (make run)",
        epilog="example: ct-insider dev --state-dir .dev",
    )
    dev.add_argument("--state-dir", type=Path, default=Path(".dev"))
    dev.add_argument("--port-offset", type=int, default=0, help="shift every port by N")
    dev.add_argument("--no-wait", action="store_true", help="exit once the demo backfill is done")
    for _, command in commands_of(parser):
        if "exit codes:" not in (command.epilog or ""):
            command.epilog = f"{command.epilog or ''}\n{EXIT_CODES_HELP}".strip()
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def commands_of(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command's words and parser (`backfill`, `dlq retry`, ...)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield words, parser
    for group in groups:
        for name, child in group.choices.items():
            yield from commands_of(child, (*words, name))


def run() -> NoReturn:
    """The console script: exits with the command's own status, every time.

    A process that used the Temporal client can die while Python finalizes, after its work
    is done, with "Fatal Python error: PyGILState_Release" and status 134: the SDK's Rust
    threads call into an interpreter that is shutting down (a known teardown race). So the
    command flushes what it wrote and leaves without finalizing the interpreter.
    """
    try:
        status = main()
    except SystemExit as exc:  # argparse's usage errors and --help, ConfigurationError
        status = ExitCode.OK if exc.code is None else exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        status = 130
    except BaseException:  # a bug of ours: its traceback, and still our own exit status
        traceback.print_exc()
        status = ExitCode.FAILURES
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # JSON lines on a server, console-pretty on a terminal; the dev stack always pretty.
    configure_logging(args.log_level, json=False if args.command == "dev" else None)
    configure_pii_fingerprints()  # keyed by TEMPORAL_CODEC_KEYS, alike in every process
    handler: Handler | None = getattr(args, "handler", None)
    try:
        _configure_telemetry(args.command)
    except ConfigurationError as exc:
        fail(f"configuration error: {exc.message}")
        return ExitCode.USAGE
    try:
        if handler is not None:
            return asyncio.run(handler(args))
        return _builtin(args)
    except UsageError as exc:
        fail(f"{args.command}: {exc}")
        return ExitCode.USAGE
    except WorkflowStuck as exc:
        # Waiting on would never end; what is wrong is the setup, not the records.
        fail(f"{args.command}: {exc}")
        return ExitCode.USAGE
    except WorkflowFailureError as exc:
        cause = exc.cause.message if isinstance(exc.cause, FailureError) else str(exc)
        fail(f"{args.command}: the workflow failed: {cause} (see it in the Temporal UI)")
        return ExitCode.FAILURES
    except Exception as exc:
        down = unreachable(exc)
        if down is None:
            raise
        fail(str(down))
        return ExitCode.UNREACHABLE
    finally:
        shutdown_telemetry()  # flush spans and metrics before the process leaves


def _configure_telemetry(command: str) -> None:
    """Traces and metrics for the servers and the operator commands; the emulators and the
    dev stack (whose processes configure their own) set up none. Only servers open a
    Prometheus endpoint."""
    if command in ("emulate", "dev"):
        return
    service = {
        "worker": "ct-insider-worker",
        "bridge": "ct-insider-bridge",
        "consume": "ct-insider-bridge",  # the bridge, pulling a queue into it
    }.get(command)
    configure_telemetry(service or "ct-insider-cli", serve_metrics=service is not None)


def _builtin(args: argparse.Namespace) -> int:
    if args.command == "worker":
        return asyncio.run(_worker(args))
    if args.command == "bridge":
        from bridge.server import serve

        asyncio.run(
            serve(load(BridgeSettings), load(TemporalSettings), load(CommercetoolsSettings))
        )
        return 0
    if args.command in ("emulate", "dev"):
        try:
            import emulators  # noqa: F401
        except ModuleNotFoundError as exc:  # the runtime image leaves them out
            if exc.name != "emulators":
                raise
            raise UsageError("the emulators are not installed here: use a checkout") from None
    if args.command == "emulate":
        return _emulate(args)
    if args.command == "dev":
        from starters.dev import run_dev_stack

        return run_dev_stack(args.state_dir, wait=not args.no_wait, port_offset=args.port_offset)
    raise AssertionError(f"unhandled command {args.command}")


async def _worker(args: argparse.Namespace) -> int:
    from ct_insider.logging import get_logger
    from ct_insider.mapping.config import MappingConfigError
    from ct_insider.temporal import connect
    from starters.mapping_rules import mapping_rules
    from workers.main import run_worker

    if args.ready_file is not None:
        # A restarted container keeps its files: the last run's must not say this one polls,
        # also when this one stops at its configuration.
        args.ready_file.unlink(missing_ok=True)
    temporal = load(TemporalSettings)
    ct = load(CommercetoolsSettings)
    insider = load(InsiderSettings)
    try:
        rules = mapping_rules(args.mapping)
    except MappingConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    mapping = rules.config
    get_logger(__name__).info(rules.describe())
    client = await connect(temporal, with_metrics=True)
    try:
        await run_worker(
            client,
            temporal.task_queue,
            temporal.journey_task_queue,
            ct,
            insider,
            mapping,
            args.ready_file,
            journey_shards=temporal.journey_shards,
            carts=load(CartSettings),
        )
    finally:
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
    return 0


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
        create_app(config),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's lines go through ct_insider.logging
    )
    return 0


if __name__ == "__main__":
    run()
