"""What every `ct-insider` command prints and how it exits.

Scripts get `--json` (one JSON document on stdout) and the documented exit codes; people
on a terminal get rich tables and progress. Errors go to stderr as one line, never a
traceback: an unreachable server is a fact about the world, not a bug of ours.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from enum import IntEnum
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from temporalio.client import Client, WorkflowHandle

from ct_insider.sync.window import parse_timestamp


class ExitCode(IntEnum):
    OK = 0
    # The command ran to its end, but found failures or drift (rejected records, a failed
    # check, a letter that could not be re-driven).
    FAILURES = 1
    USAGE = 2  # a usage or configuration error: nothing was done
    UNREACHABLE = 3  # a system (commercetools, Insider, Temporal) could not be reached


EXIT_CODES_HELP = (
    "exit codes: 0 ok; 1 finished with failures or drift found; "
    "2 usage or configuration error; 3 a system unreachable"
)


class Unreachable(Exception):
    """A system the command needs did not answer, or refused our credentials."""

    def __init__(self, system: str, detail: str) -> None:
        super().__init__(f"{system} unreachable: {detail}")
        self.system = system
        self.detail = detail


class UsageError(Exception):
    """The command line or configuration asks for something that cannot be done."""


def unreachable(exc: BaseException) -> Unreachable | None:
    """The system an exception says could not be reached, if that is what it says."""
    import httpx
    from temporalio.service import RPCError, RPCStatusCode

    from ct_insider.commercetools.errors import CommercetoolsAuthError, CommercetoolsUnavailable
    from ct_insider.insider.errors import InsiderConfigurationError, InsiderUnavailable

    if isinstance(exc, Unreachable):
        return exc
    if isinstance(exc, httpx.TransportError):
        try:
            where = str(exc.request.url.copy_with(query=None))
        except RuntimeError:  # no request attached
            where = "a server"
        return Unreachable(where, f"{type(exc).__name__}: {exc}")
    if isinstance(exc, CommercetoolsUnavailable):
        return Unreachable("commercetools", str(exc))
    if isinstance(exc, CommercetoolsAuthError):
        return Unreachable("commercetools", f"refused our credentials: {exc}")
    if isinstance(exc, InsiderUnavailable):
        return Unreachable("Insider", str(exc))
    if isinstance(exc, InsiderConfigurationError):
        return Unreachable("Insider", f"refused our credentials: {exc}")
    if isinstance(exc, RPCError) and exc.status in (
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.UNAUTHENTICATED,
        RPCStatusCode.PERMISSION_DENIED,
    ):
        return Unreachable("Temporal", f"{exc.status.name}: {exc.message}")
    if isinstance(exc, RuntimeError) and "client connect" in str(exc).lower():
        return Unreachable("Temporal", str(exc).splitlines()[0])
    return None


def stdout() -> Console:
    return Console(soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, soft_wrap=True)


def timestamp(value: str) -> datetime:
    """An argparse type: an ISO 8601 timestamp with its timezone."""
    try:
        parsed = parse_timestamp(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"timestamp needs a timezone (e.g. Z): {value!r}")
    return parsed


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="one JSON document on stdout (for scripts)"
    )


def print_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any] | list[Any]) -> None:
    """One JSON document on stdout, whatever the terminal."""
    if isinstance(data, BaseModel):
        text = data.model_dump_json(indent=2)
    elif isinstance(data, list) and data and all(isinstance(d, BaseModel) for d in data):
        text = json.dumps([d.model_dump(mode="json") for d in data], indent=2)
    else:
        text = json.dumps(data, indent=2, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


R = TypeVar("R", bound=BaseModel)


async def report_run(
    client: Client,
    handle: WorkflowHandle[Any, R],
    what: str,
    args: argparse.Namespace,
    *,
    result_key: str,
    show: Callable[[R], None],
    follow: Callable[[], Awaitable[R]] | None = None,
) -> R | None:
    """Say which run started; with --wait, its result (as JSON, or shown, after following
    its progress on a terminal), returned for the exit status. None when not waited for.
    A wait whose workflow keeps failing its tasks ends in WorkflowStuck (starters/watch.py)."""
    from starters.watch import watched

    started = {"workflow_id": handle.id, "run_id": handle.result_run_id}
    if not args.wait:
        if args.json:
            print_json(started)
        else:
            stdout().print(f"{what} workflow {handle.id} (run {handle.result_run_id})")
        return None
    result = await watched(
        client, handle.id, handle.result() if args.json or follow is None else follow()
    )
    if args.json:
        print_json({**started, result_key: result.model_dump(mode="json")})
    else:
        show(result)
    return result


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    shown = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        shown.add_column(column)
    for row in rows:
        shown.add_row(*("-" if cell is None else str(cell) for cell in row))
    return shown


def fail(message: str) -> None:
    """One line on stderr (no traceback)."""
    stderr().print(message, markup=False, highlight=False)
