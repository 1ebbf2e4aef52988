"""Render the reference tables of the docs from the code, into marked regions (`make docs`).

The configuration table comes from the settings classes in ct_insider/config.py (their field
descriptions), the mapping-rules table from MappingConfig's defaults, the CLI at a glance from
the argparse parser. Each lands between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`
in its file; text outside the markers is written by hand. `--check` changes nothing and exits 1
when a region is stale (tests/unit/test_docs_generated.py does the same).
"""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parent.parent


class UndocumentedField(ValueError):
    """A setting or mapping rule without a description: the generated table would have a hole."""


def _cell(text: str) -> str:
    """Markdown table cell: pipes escaped, one line."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(value: str) -> str:
    return f"`{value}`"


def _type_name(annotation: Any) -> str:
    """A reader's name for a field type: `int`, `secret`, `a` or `b`, `path, optional`."""
    if annotation is SecretStr:
        return "secret"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " or ".join(_code(str(arg)) for arg in args)
    if origin in (typing.Union, types.UnionType):
        present = [arg for arg in args if arg is not type(None)]
        name = " or ".join(_type_name(arg) for arg in present)
        return f"{name}, optional" if len(present) < len(args) else name
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map {_type_name(args[0])} → {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " or ".join(_code(str(member.value)) for member in annotation)
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def _bounds(field: FieldInfo) -> str:
    """Numeric bounds pydantic enforces, e.g. ` (≥ 1, ≤ 64)`, so the table says what is accepted."""
    low = high = ""
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"≥ {item.ge}"
        elif isinstance(item, annotated_types.Gt):
            low = f"> {item.gt}"
        elif isinstance(item, annotated_types.Le):
            high = f"≤ {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f"< {item.lt}"
    parts = [part for part in (low, high) if part]
    return f" ({', '.join(parts)})" if parts else ""


def _default_value(field: FieldInfo) -> tuple[bool, Any]:
    """(required, default) with default factories evaluated."""
    if field.default_factory is not None:
        factory = typing.cast(Callable[[], Any], field.default_factory)
        return False, factory()
    if field.default is PydanticUndefined:
        return True, None
    return False, field.default


def _as_json(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        # Unset optional parts of an item (a market's channel) would only lengthen the cell.
        value = [
            v.model_dump(mode="json", exclude_none=True) if isinstance(v, BaseModel) else v
            for v in value
        ]
    elif isinstance(value, Path):
        value = str(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _describe(owner: str, name: str, field: FieldInfo) -> str:
    if not field.description:
        raise UndocumentedField(
            f"{owner}.{name} has no description=: add one (the docs table is built from it)"
        )
    return field.description


# --- configuration ---------------------------------------------------------------------------


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class of ct_insider/config.py, in the order the module defines them."""
    from ct_insider import config

    found = [
        value
        for value in vars(config).values()
        if isinstance(value, type)
        and issubclass(value, BaseSettings)
        and value is not BaseSettings
        and value.__module__ == config.__name__
    ]
    return sorted(found, key=lambda cls: inspect.getsourcelines(cls)[1])


def variable_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set a field: an alias (e.g. the standard OTEL_* names)
    replaces the prefixed field name."""
    alias = field.validation_alias or field.alias
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        return [choice.upper() for choice in alias.choices if isinstance(choice, str)]
    prefix = str(cls.model_config.get("env_prefix", ""))
    return [f"{prefix}{name}".upper()]


def _config_default(field: FieldInfo) -> str:
    required, default = _default_value(field)
    if required:
        return "required"
    if default is None:
        return "unset"
    if isinstance(default, SecretStr):
        return "secret"
    if isinstance(default, bool):
        return _code(str(default).lower())
    if default == "":
        return "empty"
    return _code(str(default))


def _class_title(cls: type[BaseSettings]) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    # Only the class's own docstring: an inherited one describes pydantic's BaseSettings.
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    summary = " ".join(doc.split("\n\n")[0].split())
    title = cls.__name__.removesuffix("Settings")
    return f"**{title}** (`{prefix}*`)" + (f": {summary}" if summary else "")


def render_config() -> str:
    lines: list[str] = []
    for cls in settings_classes():
        lines += [_class_title(cls), "", "| variable | type | default | meaning |"]
        lines.append("| --- | --- | --- | --- |")
        for name, field in cls.model_fields.items():
            kind = _type_name(field.annotation) + _bounds(field)
            description = _describe(cls.__name__, name, field)
            row = [
                " or ".join(map(_code, variable_names(cls, name, field))),
                kind,
                _config_default(field),
                description,
            ]
            lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
        lines.append("")
    lines += _default_scopes()
    return "\n".join(lines).rstrip("\n")


def _default_scopes() -> list[str]:
    """What an empty CTP_SCOPES asks for, from the one list `setup commercetools` checks."""
    from ct_insider.commercetools.scopes import NEEDS, default_scope_names

    lines = [
        "An empty `CTP_SCOPES` asks for exactly the scopes the features need "
        "(`ct_insider/commercetools/scopes.py`, each `<scope>:<project key>`):",
        "",
        "| scope | needed for |",
        "| --- | --- |",
    ]
    for scope in default_scope_names():
        reasons = [f"{need.feature}: {need.why}" for need in NEEDS if need.name == scope]
        lines.append(f"| {_code(scope)} | {_cell('; '.join(reasons))} |")
    return lines


# --- mapping rules ---------------------------------------------------------------------------


def _rule_rows(model: type[BaseModel], path: str) -> Iterator[list[str]]:
    for name, field in model.model_fields.items():
        dotted = f"{path}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            # A group of rules: one row per rule inside it.
            yield from _rule_rows(annotation, f"{dotted}.")
            continue
        required, default = _default_value(field)
        description = _describe(model.__name__, name, field)
        item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if isinstance(item, type) and issubclass(item, BaseModel):
            yield [_code(dotted), f"list of {item.__name__}", _code(_as_json(default)), description]
            yield from _rule_rows(item, f"{dotted}[].")
            continue
        shown = "required" if required else _code(_as_json(default))
        yield [_code(dotted), _type_name(annotation), shown, description]


def render_mapping(keep: Callable[[str], bool] = lambda rule: True) -> str:
    from ct_insider.mapping.config import MappingConfig

    lines = ["| rule | type | default | meaning |", "| --- | --- | --- | --- |"]
    for row in _rule_rows(MappingConfig, ""):
        if keep(row[0].strip("`")):
            lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines)


# docs/deploy.md's tables, one per part of the mapping an operator writes: every rule lands
# in exactly one of them (tests/unit/test_docs_generated.py).
def _is_event_name(rule: str) -> bool:
    return rule.endswith("_event")


MAPPING_PARTS: dict[str, Callable[[str], bool]] = {
    "mapping-customers": lambda rule: (
        not rule.startswith(("orders.", "catalog.")) and not _is_event_name(rule)
    ),
    "mapping-orders": lambda rule: rule.startswith("orders.") and not _is_event_name(rule),
    "mapping-events": _is_event_name,
    "mapping-catalog": lambda rule: rule.startswith("catalog."),
}


# --- CLI at a glance -------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str, str]]:
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            command = f"{path} {name}"
            example = (sub.epilog or "").splitlines()[0] if sub.epilog else ""
            yield command, helps.get(name, ""), example.removeprefix("example: ")
            yield from _subcommands(sub, command)


def render_cli() -> str:
    from starters.cli import _parser

    lines = ["| command | what it does | example |", "| --- | --- | --- |"]
    for command, summary, example in _subcommands(_parser(), "ct-insider"):
        shown = _code(example) if example else ""
        lines.append(f"| {_code(command)} | {_cell(summary)} | {_cell(shown)} |")
    return "\n".join(lines)


# --- regions ---------------------------------------------------------------------------------

RENDERERS: dict[str, Callable[[], str]] = {
    "config": render_config,
    "mapping": render_mapping,
    "cli": render_cli,
    **{
        name: (lambda keep=keep: render_mapping(keep))  # type: ignore[misc]
        for name, keep in MAPPING_PARTS.items()
    },
}
# Which generated regions each document holds.
TARGETS: dict[str, tuple[str, ...]] = {
    "docs/operations.md": ("config", "mapping"),
    "README.md": ("cli",),
    "docs/deploy.md": tuple(MAPPING_PARTS),
}


class MissingRegion(ValueError):
    """A document lost the markers of a region the generator fills."""


def fill_region(text: str, name: str, content: str) -> str:
    """The text with the region `name` holding exactly `content` (markers kept)."""
    pattern = re.compile(
        rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", flags=re.DOTALL
    )
    if not pattern.search(text):
        raise MissingRegion(f"no <!-- generated:{name} --> ... <!-- /generated:{name} --> region")
    return pattern.sub(lambda match: f"{match[1]}{content}\n{match[2]}", text, count=1)


def regenerate(path: str, text: str) -> str:
    for name in TARGETS[path]:
        text = fill_region(text, name, RENDERERS[name]())
    return text


def stale_documents(root: Path = ROOT) -> list[str]:
    """The documents whose generated regions differ from what the code renders now."""
    stale = []
    for path in TARGETS:
        text = (root / path).read_text(encoding="utf-8")
        if regenerate(path, text) != text:
            stale.append(path)
    return stale


DOCUMENTS = ("README.md", "bench/README.md", "docs")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's id of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {_anchor(line.lstrip("#")) for line in lines if line.startswith("#")}


def broken_links(root: Path = ROOT) -> list[str]:
    """Relative links of the docs whose file or heading does not exist ("file: link")."""
    files: list[Path] = []
    for name in DOCUMENTS:
        target = root / name
        files += sorted(target.rglob("*.md")) if target.is_dir() else [target]
    broken = []
    for document in files:
        for link in _LINK.findall(document.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", link):
                continue  # http(s), mailto: not checked offline
            path_part, _, anchor = link.partition("#")
            target = (document.parent / path_part).resolve() if path_part else document
            if not target.exists() or (
                anchor and target.suffix == ".md" and anchor not in _anchors(target)
            ):
                broken.append(f"{document.relative_to(root)}: {link}")
    return broken


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate the configuration, mapping and CLI tables of the docs.",
        epilog="example: python -m tools.gen_docs --check",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a table is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_documents()
        for path in stale:
            print(f"{path}: generated tables are stale; run `make docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in TARGETS:
        target = ROOT / path
        text = target.read_text(encoding="utf-8")
        updated = regenerate(path, text)
        if updated != text:
            target.write_text(updated, encoding="utf-8")
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
