"""Every `ct-insider` command keeps the CLI's promises: an example in its --help, and
--json output unless it is a server."""

from __future__ import annotations

from starters.cli import _parser, commands_of

SERVERS = {"worker", "bridge", "consume", "emulate", "dev"}


def test_commands_are_found() -> None:
    names = {" ".join(path) for path, _ in commands_of(_parser())}
    assert {"backfill", "sync delta", "sync catalog", "status", "worker"} <= names


def test_every_command_has_an_example_and_the_exit_codes_in_its_help() -> None:
    missing = [
        " ".join(path)
        for path, parser in commands_of(_parser())
        if "example:" not in (parser.epilog or "") or "exit codes: 0 ok" not in parser.format_help()
    ]
    assert missing == []


def test_every_command_but_the_servers_offers_json() -> None:
    missing = [
        " ".join(path)
        for path, parser in commands_of(_parser())
        if path[0] not in SERVERS
        and not any("--json" in action.option_strings for action in parser._actions)
    ]
    assert missing == []
