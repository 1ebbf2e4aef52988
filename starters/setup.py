"""`ct-insider setup commercetools|insider|temporal`: create or check what the connector
needs outside itself (idempotent: running it again changes nothing but the time of the
settle-matching probe `setup insider` stores)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ct_insider.config import (
    CartSettings,
    CommercetoolsSettings,
    InsiderSettings,
    ReplenishmentSettings,
    SubscriptionSettings,
    TemporalSettings,
    load,
)
from starters.output import (
    ExitCode,
    UsageError,
    add_json_flag,
    fail,
    print_json,
    stdout,
    table,
    unreachable,
)

if TYPE_CHECKING:
    from ct_insider.setup.inone import InOneRequirements
    from ct_insider.setup.matching import MatchingCheck


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    setup = commands.add_parser(
        "setup",
        help="create the commercetools subscription, check tokens and scopes, register "
        "Insider locales and Temporal search attributes",
        epilog="example: ct-insider setup commercetools --dry-run",
    )
    systems = setup.add_subparsers(dest="system", required=True)
    ct = systems.add_parser(
        "commercetools",
        help="create or update the Subscription (CT_INSIDER_SUBSCRIPTION_*) and check the "
        "API client's scopes",
        epilog="example: CT_INSIDER_SUBSCRIPTION_DESTINATION=GoogleCloudPubSub "
        "CT_INSIDER_SUBSCRIPTION_GCP_PROJECT_ID=shop CT_INSIDER_SUBSCRIPTION_GCP_TOPIC=ct "
        "ct-insider setup commercetools --json",
    )
    ct.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    ct.add_argument(
        "--scopes-only",
        action="store_true",
        help="check the API client's scopes, leave the Subscription alone (also what runs "
        "when CT_INSIDER_SUBSCRIPTION_DESTINATION is unset: no realtime)",
    )
    add_json_flag(ct)
    ct.set_defaults(handler=setup_commercetools)
    insider = systems.add_parser(
        "insider",
        help="verify the UCD and Catalog tokens, register the catalog locales, probe how "
        "profile reads return events (stored for the workers' settlement), list what must "
        "exist in InOne",
        epilog="example: ct-insider setup insider --mapping rules.json",
    )
    insider.add_argument(
        "--mapping",
        type=Path,
        help="JSON file of your mapping rules (default: CT_INSIDER_MAPPING_PATH); the example "
        "rules are refused unless CT_INSIDER_MAPPING_ALLOW_EXAMPLE=true",
    )
    add_json_flag(insider)
    insider.set_defaults(handler=setup_insider)
    temporal = systems.add_parser(
        "temporal",
        help="register the search attributes the workflows set",
        epilog="example: ct-insider setup temporal --json",
    )
    add_json_flag(temporal)
    temporal.set_defaults(handler=setup_temporal)


async def setup_commercetools(args: argparse.Namespace) -> int:
    from ct_insider.commercetools.client import CommercetoolsClient
    from ct_insider.commercetools.errors import CommercetoolsAuthError, CommercetoolsRequestError
    from ct_insider.setup.subscription import (
        FormatMismatch,
        ensure_subscription,
        subscription_draft,
    )
    from ct_insider.setup.verify import check_scopes

    settings = load(CommercetoolsSettings)
    subscription = None if args.scopes_only else realtime_subscription()
    draft = (
        subscription_draft(subscription, carts=load(CartSettings).events_enabled)
        if subscription is not None
        else None
    )
    try:
        scopes = await check_scopes(settings)
    except CommercetoolsAuthError as exc:
        fail(f"commercetools refused the API client's credentials: {exc}")
        return ExitCode.UNREACHABLE
    if draft is None:
        skipped = (
            "--scopes-only"
            if args.scopes_only
            else "CT_INSIDER_SUBSCRIPTION_DESTINATION is not set (no realtime)"
        )
        return _scopes_alone(scopes.model_dump(mode="json"), skipped, json_output=args.json)
    # Subscriptions need a scope the worker does not: asked for only here.
    managing = settings.model_copy(
        update={"scopes": f"manage_subscriptions:{settings.project_key}"}
    )
    problem: str | None = None
    result = None
    try:
        async with CommercetoolsClient(managing) as ct:
            result = await ensure_subscription(ct, draft, dry_run=args.dry_run)
    except FormatMismatch as exc:
        problem = str(exc)
    except (CommercetoolsAuthError, CommercetoolsRequestError) as exc:
        if exc.status_code not in (400, 401, 403) or (
            exc.status_code == 400 and "scope" not in exc.message + " ".join(exc.codes)
        ):
            raise
        problem = (
            f"the API client may not manage subscriptions (it needs "
            f"manage_subscriptions:{settings.project_key}, for setup only): {exc}"
        )
    failed = bool(scopes.missing) or problem is not None
    if args.json:
        print_json(
            {
                "ok": not failed,
                "scopes": scopes.model_dump(mode="json"),
                "subscription": result.model_dump(mode="json") if result else None,
                "problem": problem,
            }
        )
    else:
        _print_scopes(scopes.model_dump(mode="json"))
        if result is not None:
            changed = f" ({', '.join(result.changed)})" if result.changed else ""
            stdout().print(
                f"subscription {result.key}: {result.outcome}{changed}, "
                f"destination {result.subscription['destination']['type']}",
                markup=False,
            )
    if problem:
        fail(f"setup commercetools: {problem}")
    if scopes.missing:
        fail(
            "setup commercetools: missing scopes "
            + ", ".join(f"{m.scope} ({m.where})" for m in scopes.missing)
        )
    return ExitCode.FAILURES if failed else ExitCode.OK


def realtime_subscription() -> SubscriptionSettings | None:
    """The Subscription's settings; None while no destination is set (no realtime: the
    connector runs on backfills and delta syncs alone). A destination set but incomplete
    or invalid stops the command, naming the variables (exit 2)."""
    from pydantic import ValidationError

    try:
        return SubscriptionSettings()
    except ValidationError as exc:
        if any(e["type"] == "missing" and e["loc"] == ("destination",) for e in exc.errors()):
            return None
    return load(SubscriptionSettings)


def _scopes_alone(scopes: dict[str, Any], skipped: str, *, json_output: bool) -> int:
    if json_output:
        print_json(
            {
                "ok": not scopes["missing"],
                "scopes": scopes,
                "subscription": None,
                "subscription_skipped": skipped,
                "problem": None,
            }
        )
    else:
        _print_scopes(scopes)
        stdout().print(f"subscription: not checked ({skipped})", markup=False)
    if scopes["missing"]:
        fail(
            "setup commercetools: missing scopes "
            + ", ".join(f"{m['scope']} ({m['where']})" for m in scopes["missing"])
        )
        return ExitCode.FAILURES
    return ExitCode.OK


def _print_scopes(scopes: dict[str, Any]) -> None:
    missing = {m["scope"]: m for m in scopes["missing"]}
    rows = [
        [m["scope"], f"MISSING from {m['where']}", ", ".join(m["features"]), "; ".join(m["why"])]
        for m in missing.values()
    ]
    if not rows:
        stdout().print("commercetools scopes: OK (every feature's scope is granted)", markup=False)
        return
    stdout().print(table("commercetools scopes", ["scope", "status", "features", "for"], rows))


async def setup_insider(args: argparse.Namespace) -> int:
    from ct_insider.commercetools.client import CommercetoolsClient
    from ct_insider.commercetools.errors import CommercetoolsError
    from ct_insider.insider.client import InsiderClient
    from ct_insider.insider.errors import InsiderConfigurationError, InsiderError
    from ct_insider.insider.probe import ProbeFailed
    from ct_insider.mapping.config import MappingConfigError
    from ct_insider.setup.inone import inone_requirements
    from ct_insider.setup.matching import MatchingStore, check_matching
    from ct_insider.setup.verify import register_locales, verify_ucd_token
    from starters.mapping_rules import mapping_rules

    settings = load(InsiderSettings)
    # The probe's answer is kept in commercetools, where the workers read it.
    ct_settings = load(CommercetoolsSettings)
    try:
        rules = mapping_rules(args.mapping)
    except MappingConfigError as exc:
        raise UsageError(str(exc)) from None
    mapping = rules.config
    if rules.example:  # said before anything is registered in the account (stderr: --json)
        fail(rules.describe())
    requirements = inone_requirements(mapping, load(ReplenishmentSettings))
    matching: MatchingCheck | None = None
    problem: str | None = None
    exit_code = ExitCode.OK
    async with InsiderClient(settings) as insider, CommercetoolsClient(ct_settings) as ct:
        try:
            await verify_ucd_token(insider)
        except InsiderConfigurationError as exc:
            fail(f"Insider UCD refused the partner name or UCD token (INSIDER_API_KEY): {exc}")
            return ExitCode.UNREACHABLE
        try:
            created = await register_locales(insider, mapping)
        except InsiderConfigurationError as exc:
            fail(
                "Insider catalog refused the partner name or catalog token "
                f"(INSIDER_CATALOG_API_KEY): {exc}"
            )
            return ExitCode.UNREACHABLE
        try:
            matching = await check_matching(insider, settings, MatchingStore(ct), save=True)
        except ProbeFailed as exc:
            problem, exit_code = f"settle matching probe: {exc}", ExitCode.FAILURES
        except (InsiderError, CommercetoolsError) as exc:
            problem = f"settle matching probe: {exc}"
            exit_code = ExitCode.UNREACHABLE if unreachable(exc) else ExitCode.FAILURES
    if matching is not None and matching.status == "FAIL":
        problem, exit_code = f"settle matching: {matching.detail}", ExitCode.FAILURES
    locales = [market.locale for market in mapping.catalog.markets]
    if args.json:
        print_json(
            {
                "mapping": str(rules.path) if rules.path is not None else None,
                "example_mapping": rules.example,
                "ucd_token": "ok",
                "catalog_token": "ok",
                "locales": locales,
                "locales_created": created,
                "settle_matching": matching.model_dump(mode="json") if matching else None,
                "problem": problem,
                "inone": requirements.model_dump(mode="json"),
                "custom_events": requirements.custom_events,
            }
        )
    else:
        if not rules.example:
            stdout().print(rules.describe(), markup=False)
        _print_insider(requirements, locales, created, matching)
    if problem:
        fail(f"setup insider: {problem}")
    return exit_code


def _print_insider(
    requirements: InOneRequirements,
    locales: list[str],
    created: int,
    matching: MatchingCheck | None,
) -> None:
    out = stdout()
    out.print("Insider UCD token: OK", markup=False)
    out.print(
        f"Insider catalog token: OK; locales {', '.join(locales)} registered ({created} new)",
        markup=False,
    )
    if matching is not None:
        out.print(f"Settle matching: {matching.status} {matching.detail}", markup=False)
    out.print(
        table(
            "InOne custom attributes (Attributes & Events)",
            ["attribute", "type and meaning"],
            sorted(requirements.custom_attributes.items()),
        )
    )
    out.print(
        table(
            "InOne events and their custom params",
            ["event", "kind", "custom params"],
            [
                [e.name, "custom: create it" if e.custom else "default", ", ".join(e.params)]
                for e in requirements.events
            ],
        )
    )
    out.print(
        f"Identity Resolution: enable {', '.join(requirements.identifiers)}"
        + (
            f"; catalog product attributes: {', '.join(requirements.catalog_product_attributes)}"
            if requirements.catalog_product_attributes
            else ""
        ),
        markup=False,
    )


async def setup_temporal(args: argparse.Namespace) -> int:
    # Imported here: the module belongs to the search attributes' own change.
    from temporalio.service import RPCError

    from ct_insider.search_attributes import (
        SearchAttributeConflict,
        SearchAttributesRefused,
        cloud_types,
        ensure_search_attributes,
    )
    from ct_insider.temporal import connect

    settings = load(TemporalSettings)
    client = await connect(settings)
    try:
        added = await ensure_search_attributes(client, settings.namespace)
    except SearchAttributeConflict as exc:
        fail(f"setup temporal: {exc}")
        return ExitCode.FAILURES
    except SearchAttributesRefused as exc:
        # e.g. PERMISSION_DENIED on Temporal Cloud: add them in the Cloud UI or with tcld.
        fail(
            f"setup temporal: Temporal refused to register {', '.join(exc.missing)} "
            f"({exc.reason}); on Temporal Cloud add them in the Cloud UI or with "
            f"`tcld namespace search-attributes add`: {cloud_types(exc.missing)}"
        )
        return ExitCode.FAILURES
    except RPCError as exc:
        fail(f"setup temporal: Temporal refused to list search attributes: {exc.message}")
        return ExitCode.FAILURES
    if args.json:
        print_json({"namespace": settings.namespace, "search_attributes_added": added})
    elif added:
        stdout().print(
            f"namespace {settings.namespace}: added search attributes {', '.join(added)}",
            markup=False,
        )
    else:
        stdout().print(
            f"namespace {settings.namespace}: every search attribute already registered",
            markup=False,
        )
    return ExitCode.OK
