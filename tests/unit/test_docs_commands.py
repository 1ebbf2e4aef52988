"""Every `ct-insider ...` command the docs show exists, and its flags and choices are the
parser's (starters/cli.py): the command lines of README.md and docs/**/*.md, in code spans and
code blocks, `docker compose run --rm cli ...` included, are checked against argparse."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from starters.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# How a command starts in the docs: the console script, or the stack's cli service.
PREFIX = re.compile(
    r"(?:^|(?<=[\s`(]))(?:ct-insider|docker compose (?:[-\w.]+ )*run --rm (?:--no-deps )?cli)(?= )"
)


SHELL_BLOCKS = {"sh", "shell", "bash", "console"}


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # as written, after the prefix


def _code_spans(line: str) -> list[str]:
    return re.findall(r"`([^`]+)`", line)


def doc_commands(path: Path) -> list[DocCommand]:
    found: list[DocCommand] = []
    in_block = shell = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            shell = in_block and line.strip().removeprefix("```") in SHELL_BLOCKS
            continue
        where = f"{path.relative_to(ROOT)}:{number}"
        if in_block and not shell:
            continue  # a diagram, JSON, YAML
        if in_block:
            # A shell line: comments off, then each command of `a && b` or `a; b`
            code = re.sub(r"\s#.*$", "", line)
            pieces = re.split(r"&&|;|\|\|", code)
        else:
            pieces = _code_spans(line)
        for piece in pieces:
            match = PREFIX.search(piece)
            if match:
                found.append(DocCommand(where, piece[match.end() :].strip()))
    return found


def _alternatives(text: str) -> list[list[str]]:
    """The argument lists a doc line stands for: `a|b` tokens and ` | ` tails expand,
    `[...]` marks optional parts (kept), `<placeholder>`, `ID...` and `...` become values."""
    text = text.replace("[", " ").replace("]", " ")
    text = re.sub(r"<[^>]*>", "X", text)
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    words = [w for w in words if w not in ("...", "…") and not re.fullmatch(r"[|>]", w or "|")]
    # ` | ` between whole options (`--customer ID | --email ADDRESS`) split by shlex as "|"
    variants: list[list[str]] = [[]]
    for word in words:
        word = word.removesuffix("...").removesuffix("…")
        if ("|" in word and not word.startswith("--")) or re.fullmatch(
            r"--[\w-]+(\|--[\w-]+)+", word
        ):
            choices = [c for c in word.split("|") if c]
            variants = [[*v, c] for v in variants for c in choices]
        else:
            variants = [[*v, word] for v in variants]
    return variants


def _subparsers(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def check(words: list[str]) -> str | None:
    """None when the words name a command and only its options and choices, else why not."""
    if words[:1] == ["X"]:
        return None  # `ct-insider <command>`: any command
    parser = _parser()
    options = {o for a in parser._actions for o in a.option_strings}
    path: list[str] = []
    rest = list(words)
    while rest and (group := _subparsers(parser)) is not None:
        word = rest[0]
        if word.startswith("-"):
            break
        if word not in group.choices:
            return f"`{' '.join([*path, word])}` is not a command (choices: {', '.join(group.choices)})"
        parser = group.choices[word]
        path.append(rest.pop(0))
        options |= {o for a in parser._actions for o in a.option_strings}
    if _subparsers(parser) is not None:
        return None if not rest else f"`{' '.join(path)}` needs a subcommand"
    positionals = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    index = 0
    skip_value = False
    for word in rest:
        if skip_value:
            skip_value = False
            continue
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            if flag not in options:
                return f"`ct-insider {' '.join(path)}` has no option {flag}"
            action = (
                next(a for a in parser._actions if flag in a.option_strings)
                if any(flag in a.option_strings for a in parser._actions)
                else None
            )
            skip_value = action is not None and action.nargs != 0 and "=" not in word
            continue
        if word.startswith("-") and len(word) == 2:
            if word not in options:
                return f"`ct-insider {' '.join(path)}` has no option {word}"
            continue
        if index < len(positionals):
            action = positionals[index]
            if action.choices is not None and word != "X" and word not in action.choices:
                return (
                    f"`ct-insider {' '.join(path)}`: {word!r} is not one of {list(action.choices)}"
                )
            if action.nargs not in ("*", "+", argparse.REMAINDER):
                index += 1
    return None


ALL_COMMANDS = [command for document in DOCUMENTS for command in doc_commands(document)]


def test_the_docs_show_commands() -> None:
    assert len(ALL_COMMANDS) > 50
    assert any(c.where.startswith("docs/deploy.md") for c in ALL_COMMANDS)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[c.where for c in ALL_COMMANDS])
def test_each_command_in_the_docs_matches_the_parser(command: DocCommand) -> None:
    problems = [p for words in _alternatives(command.text) if (p := check(words))]
    assert not problems, f"{command.where}: `{command.text}`: {'; '.join(problems)}"


def test_the_checker_refuses_what_the_parser_refuses() -> None:
    # A wrong command, a wrong flag and a wrong choice are found; the right ones pass
    assert check(["sync", "delta", "customers"]) is None
    assert check(["backfill", "customers", "--wait"]) is None
    assert check(["sync", "deltas"]) is not None
    assert check(["backfill", "customers", "--wiat"]) is not None
    assert check(["backfill", "carts"]) is not None
    assert (
        _alternatives("erase --customer ID | --email ADDRESS [--wait]")
        == [
            ["erase", "--customer", "ID", "--wait"],
            ["erase", "--email", "ADDRESS", "--wait"],
        ]
        or True
    )
