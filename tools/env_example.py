"""Render `.env.example`: every variable of every settings class in ct_insider/config.py, with
its description and default, then the variables only docker-compose.yml reads.

    .venv/bin/python -m tools.env_example            # rewrite .env.example (make docs)
    .venv/bin/python -m tools.env_example --check    # exit 1 when it is stale

A variable that must be filled in is written `NAME=`; every other one is commented out with its
default (`# NAME=default`), so an unedited copy behaves like an unset variable: an empty value
would not (an empty TEMPORAL_API_KEY is a key, an empty number does not parse).
tests/unit/test_deployment.py checks the file against this rendering and docker-compose.yml.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tools.gen_docs import settings_classes, variable_names

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
WIDTH = 96

# Optional as fields, required in practice: a validator refuses to run without them unless
# encryption is switched off explicitly (TEMPORAL_CODEC_DISABLED, local development only), or
# (the codec server's token) unless single sign-on or a loopback-only dev server replaces it:
# the stack's codec server would restart forever on a .env filled in without it.
FILL_IN = frozenset({"TEMPORAL_CODEC_KEYS", "CODEC_SERVER_TOKEN"})


@dataclass(frozen=True)
class ComposeVariable:
    """A variable docker-compose.yml interpolates that no settings class reads."""

    name: str
    default: str | None  # None: required
    description: str


COMPOSE_VARIABLES: tuple[ComposeVariable, ...] = (
    ComposeVariable(
        "POSTGRES_PASSWORD", None, "password of Temporal's PostgreSQL user (set once, first `up`)"
    ),
    ComposeVariable("POSTGRES_USER", "temporal", "Temporal's PostgreSQL user"),
    ComposeVariable("POSTGRES_VERSION", "16.10", "postgres image tag"),
    ComposeVariable(
        "TEMPORAL_VERSION",
        "1.30.1",
        "temporalio/server and temporalio/admin-tools image tag (always the same: the schema "
        "job migrates the database to the server's version on the next `up`)",
    ),
    ComposeVariable("TEMPORAL_UI_VERSION", "2.34.0", "temporalio/ui image tag"),
    ComposeVariable(
        "CONNECTOR_IMAGE_TAG", "0.1.0", "tag of the ct-insider image `docker compose build` makes"
    ),
    ComposeVariable(
        "TEMPORAL_HISTORY_SHARDS",
        "512",
        "history shards of a new Temporal cluster: fixed when the database is first set up, "
        "it can never change afterwards",
    ),
    ComposeVariable(
        "TEMPORAL_RETENTION",
        "7d",
        "how long Temporal keeps closed workflows in the namespace the stack creates "
        "(TEMPORAL_NAMESPACE)",
    ),
    ComposeVariable(
        "TEMPORAL_UI_PUBLISHED_PORT",
        "8233",
        "host port of the Temporal UI (on 127.0.0.1: put a TLS proxy in front for others)",
    ),
    ComposeVariable(
        "TEMPORAL_UI_ORIGIN",
        "http://localhost:8233",
        "the Temporal UI's URL as browsers open it; CODEC_SERVER_CORS_ORIGINS must name it",
    ),
    ComposeVariable("CODEC_PUBLISHED_PORT", "8081", "host port of the codec server (on 127.0.0.1)"),
    ComposeVariable(
        "TEMPORAL_UI_CODEC_ENDPOINT",
        "http://localhost:8081",
        "the codec server's URL as the browser running the Temporal UI reaches it",
    ),
    ComposeVariable(
        "TEMPORAL_UI_SSO_ENABLED",
        "false",
        "true: the Temporal UI signs users in at CODEC_SERVER_OIDC_ISSUER and forwards their "
        "access tokens to the codec server",
    ),
    ComposeVariable("TEMPORAL_UI_SSO_CLIENT_ID", "", "the Temporal UI's client id at the issuer"),
    ComposeVariable(
        "TEMPORAL_UI_SSO_CLIENT_SECRET", "", "the Temporal UI's client secret at the issuer"
    ),
    ComposeVariable(
        "TEMPORAL_UI_SSO_CALLBACK_URL",
        "http://localhost:8233/auth/sso/callback",
        "where the issuer sends users back to the Temporal UI (register it with the client)",
    ),
    ComposeVariable(
        "TEMPORAL_UI_SSO_SCOPES",
        "openid,profile,email",
        "scopes the Temporal UI asks for; add the one that puts CODEC_SERVER_OIDC_REQUIRED_CLAIM "
        "into the tokens (often groups)",
    ),
)


def _value(default: Any) -> str:
    if default is None:
        return ""
    if isinstance(default, SecretStr):
        return default.get_secret_value()
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def _comment(text: str) -> list[str]:
    return textwrap.wrap(
        " ".join(text.split()),
        WIDTH,
        initial_indent="# ",
        subsequent_indent="# ",
        break_on_hyphens=False,
    )


def _entry(name: str, description: str, required: bool, default: Any) -> list[str]:
    if required:
        return [*_comment(f"{description} (required)"), f"{name}="]
    return [*_comment(description), f"# {name}={_value(default)}"]


def _class_header(cls: type[BaseSettings]) -> list[str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    doc = inspect.cleandoc(cls.__dict__.get("__doc__") or "")
    summary = " ".join(doc.split("\n\n")[0].split())
    title = f"{cls.__name__.removesuffix('Settings')} ({prefix}*)"
    return ["", f"# === {title} " + "=" * max(3, WIDTH - len(title) - 7), *_comment(summary)]


def settings_variables() -> dict[str, tuple[type[BaseSettings], str]]:
    """Every settings variable -> (its class, its field name)."""
    found: dict[str, tuple[type[BaseSettings], str]] = {}
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            for variable in variable_names(cls, name, field):
                found[variable] = (cls, name)
    return found


def render() -> str:
    lines = [
        "# Every variable ct-insider and docker-compose.yml read. Copy to .env and fill in the",
        "# `NAME=` lines; commented lines show defaults. Generated by `python -m tools.env_example`",
        "# from ct_insider/config.py: edit the field descriptions there, not this file.",
    ]
    for cls in settings_classes():
        lines += _class_header(cls)
        for name, field in cls.model_fields.items():
            required = field.is_required()
            default = None if required else field.get_default(call_default_factory=True)
            for variable in variable_names(cls, name, field):
                description = field.description or name.replace("_", " ")
                lines += _entry(variable, description, required or variable in FILL_IN, default)
    title = "docker-compose.yml only (images, Temporal's database and namespace)"
    lines += ["", f"# === {title} " + "=" * max(3, WIDTH - len(title) - 7)]
    for compose in COMPOSE_VARIABLES:
        lines += _entry(compose.name, compose.description, compose.default is None, compose.default)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="render .env.example from the settings")
    parser.add_argument("--check", action="store_true", help="exit 1 when .env.example is stale")
    args = parser.parse_args(argv)
    text = render()
    current = ENV_EXAMPLE.read_text() if ENV_EXAMPLE.exists() else ""
    if args.check:
        if current != text:
            print(".env.example is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        ENV_EXAMPLE.write_text(text)
        print(f"wrote {ENV_EXAMPLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
