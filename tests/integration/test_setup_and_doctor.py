"""`ct-insider setup` and `ct-insider doctor` as an operator runs them: the CLI as a process
against the emulators and the Temporal dev server, judged by exit code and output."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from ct_insider.commercetools.notifications import CHANGE_RESOURCE_TYPES, MESSAGE_TYPES
from ct_insider.commercetools.scopes import default_scope_names
from ct_insider.insider.probe import PROBE_UUID
from ct_insider.search_attributes import ALL
from emulators.process import free_port
from tests.conftest import Emulators, run_cli, running_worker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

PUBSUB = {
    "CT_INSIDER_SUBSCRIPTION_DESTINATION": "GoogleCloudPubSub",
    "CT_INSIDER_SUBSCRIPTION_GCP_PROJECT_ID": "shop-events",
    "CT_INSIDER_SUBSCRIPTION_GCP_TOPIC": "commercetools",
}


def _env(emulators: Emulators, client: Client, task_queue: str, **more: str) -> dict[str, str]:
    return {
        **emulators.environment(client.service_client.config.target_host, task_queue),
        **more,
    }


def _stored_subscription(emulators: Emulators) -> dict[str, Any]:
    stored: dict[str, Any] = emulators.ct("GET", "subscriptions/key=ct-insider")
    return stored


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


async def test_setup_commercetools_creates_keeps_and_updates_the_subscription(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    env = _env(clean_emulators, client, task_queue, **PUBSUB)

    # When setup runs against a project without the subscription
    first = await asyncio.to_thread(run_cli, env, "setup", "commercetools", "--json")
    # Then it is created with every notification type the bridge routes
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["subscription"]["outcome"] == "created"
    stored = _stored_subscription(clean_emulators)
    assert stored["destination"] == {
        "type": "GoogleCloudPubSub",
        "projectId": "shop-events",
        "topic": "commercetools",
    }
    assert {m["resourceTypeId"]: tuple(m["types"]) for m in stored["messages"]} == dict(
        MESSAGE_TYPES
    )
    assert "StandalonePriceValueChanged" in str(stored["messages"])
    assert [c["resourceTypeId"] for c in stored["changes"]] == list(CHANGE_RESOURCE_TYPES)
    assert stored["format"] == {"type": "Platform"}

    # When it runs again, nothing is written
    again = await asyncio.to_thread(run_cli, env, "setup", "commercetools", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["subscription"]["outcome"] == "unchanged"
    assert _stored_subscription(clean_emulators)["version"] == stored["version"]

    # When the destination is changed, a dry run shows it and writes nothing ...
    moved = {**env, "CT_INSIDER_SUBSCRIPTION_GCP_TOPIC": "commercetools-v2"}
    dry = await asyncio.to_thread(run_cli, moved, "setup", "commercetools", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["subscription"]["outcome"] == "would update"
    assert _stored_subscription(clean_emulators)["destination"]["topic"] == "commercetools"
    # ... and a real run updates the destination in place
    updated = await asyncio.to_thread(run_cli, moved, "setup", "commercetools", "--json")
    assert updated.returncode == 0, updated.stderr
    result = json.loads(updated.stdout)["subscription"]
    assert (result["outcome"], result["changed"]) == ("updated", ["destination"])
    after = _stored_subscription(clean_emulators)
    assert after["destination"]["topic"] == "commercetools-v2"
    assert after["id"] == stored["id"]
    assert after["version"] > stored["version"]


async def test_setup_commercetools_names_the_missing_standalone_prices_scope(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given scopes configured as the defaults were before standalone prices were read
    project = clean_emulators.project_key
    old_defaults = " ".join(
        f"{name}:{project}"
        for name in (
            "view_customers",
            "view_customer_groups",
            "view_orders",
            "view_payments",
            "view_discount_codes",
            "view_published_products",
            "view_products",
            "view_categories",
            "manage_key_value_documents",
        )
    )
    env = _env(clean_emulators, client, task_queue, **PUBSUB, CTP_SCOPES=old_defaults)

    # When setup checks them
    run = await asyncio.to_thread(run_cli, env, "setup", "commercetools", "--json")

    # Then it exits 1 naming exactly that scope and what needs it
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert [(m["scope"], m["features"]) for m in report["scopes"]["missing"]] == [
        (f"view_standalone_prices:{project}", ["catalog"])
    ]
    assert f"view_standalone_prices:{project}" in run.stderr
    assert "Traceback" not in run.stderr


async def test_setup_commercetools_without_realtime_checks_the_scopes_alone(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given no subscription destination (the connector runs without realtime)
    env = _env(clean_emulators, client, task_queue)
    assert not any(name.startswith("CT_INSIDER_SUBSCRIPTION_") for name in env)

    # When setup runs
    run = await asyncio.to_thread(run_cli, env, "setup", "commercetools", "--json")

    # Then it checks the scopes, says why the subscription was left alone, and creates none
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (report["ok"], report["subscription"]) == (True, None)
    assert "CT_INSIDER_SUBSCRIPTION_DESTINATION is not set" in report["subscription_skipped"]
    assert clean_emulators.ct("GET", "subscriptions")["results"] == []

    # When the scopes lack one, with --scopes-only and a destination set
    project = clean_emulators.project_key
    fewer = " ".join(f"{n}:{project}" for n in default_scope_names() if n != "view_orders")
    narrow = {**env, **PUBSUB, "CTP_SCOPES": fewer}
    lacking = await asyncio.to_thread(
        run_cli, narrow, "setup", "commercetools", "--scopes-only", "--json"
    )
    # Then it exits 1 naming the scope, and still creates no subscription
    assert lacking.returncode == 1, lacking.stderr
    missing = json.loads(lacking.stdout)["scopes"]["missing"]
    assert [m["scope"] for m in missing] == [f"view_orders:{project}"]
    assert json.loads(lacking.stdout)["subscription_skipped"] == "--scopes-only"
    assert clean_emulators.ct("GET", "subscriptions")["results"] == []


async def test_setup_insider_verifies_tokens_registers_locales_and_lists_inone_schema(
    client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    env = _env(clean_emulators, client, task_queue)

    # When setup insider runs with the example rules in a production environment (no opt-in)
    production = {**env, "CT_INSIDER_MAPPING_ALLOW_EXAMPLE": "false"}
    refused_example = await asyncio.to_thread(run_cli, production, "setup", "insider")
    # Then it refuses (exit 2) and registers nothing in the account
    assert refused_example.returncode == 2, refused_example.stderr
    assert "refusing the example mapping rules" in refused_example.stderr
    catalog = httpx.get(f"{clean_emulators.insider_url}/_emulator/catalog").json()
    assert catalog["locales"] == []

    # When setup insider runs with the default mapping rules, opted in as the demo does
    run = await asyncio.to_thread(run_cli, env, "setup", "insider", "--json")

    # Then it says it uses the example, both tokens are accepted, the markets' locales exist
    # in Insider's catalog ...
    assert run.returncode == 0, run.stderr
    assert "mapping rules: THE EXAMPLE (no mapping file was given" in run.stderr
    report = json.loads(run.stdout)
    assert (report["mapping"], report["example_mapping"]) == (None, True)
    assert (report["ucd_token"], report["catalog_token"]) == ("ok", "ok")
    catalog = httpx.get(f"{clean_emulators.insider_url}/_emulator/catalog").json()
    assert {"en_US", "de_DE", "en_GB"} <= set(catalog["locales"])
    assert report["locales_created"] == 3
    # ... and what InOne must define is listed
    assert {"purchase_refund", "cancelled_purchase", "login", "item_added_to_wishlist"} <= set(
        report["custom_events"]
    )
    assert "purchase" not in report["custom_events"]
    assert "ct_customer_number" in report["inone"]["custom_attributes"]
    assert "ct_anonymous_id" in report["inone"]["identifiers"]
    # ... and the probe found profile reads returning custom event params, stored that for
    # the workers, and left no probe profile behind
    matching = report["settle_matching"]
    assert (matching["probed"]["matching"], matching["status"]) == ("event_id", "OK")
    assert _stored_matching(clean_emulators)["matching"] == "event_id"
    assert _probe_profiles(clean_emulators) == []

    # When setup insider takes the operator's rules (their own market), it names the file
    # and registers that market's locale
    rules = json.loads((ROOT / "deploy/ct-insider/mapping.example.json").read_text())
    rules.pop("example")
    rules["catalog"]["url_template"] = "https://www.shop-retailer.nl/{language}/p/{slug}"
    rules["catalog"]["markets"] = [{"locale": "nl_NL", "languages": ["nl"], "currency": "EUR"}]
    own = tmp_path / "mapping.json"
    own.write_text(json.dumps(rules))
    theirs = await asyncio.to_thread(run_cli, production, "setup", "insider", "--mapping", str(own))
    assert theirs.returncode == 0, theirs.stderr
    assert f"mapping rules: {own}" in theirs.stdout
    assert "THE EXAMPLE" not in theirs.stdout + theirs.stderr
    catalog = httpx.get(f"{clean_emulators.insider_url}/_emulator/catalog").json()
    assert "nl_NL" in catalog["locales"]

    # When the catalog token is wrong, setup names the catalog and exits 3
    wrong = {**env, "INSIDER_CATALOG_API_KEY": "not-the-catalog-token"}
    refused = await asyncio.to_thread(run_cli, wrong, "setup", "insider")
    assert refused.returncode == 3
    assert "Insider catalog refused" in _last_line(refused.stderr)


def _stored_matching(emulators: Emulators) -> dict[str, Any]:
    stored: dict[str, Any] = emulators.ct(
        "GET", f"custom-objects/ct-insider-settle-matching/{emulators.partner_name}"
    )
    return dict(stored["value"])


def _probe_profiles(emulators: Emulators) -> list[dict[str, Any]]:
    return [u for u in emulators.insider_users() if u["identifiers"].get("uuid") == PROBE_UUID]


def _matching_verdict(doctor_stdout: str) -> dict[str, Any]:
    [verdict] = [
        v
        for v in json.loads(doctor_stdout)["verdicts"]
        if (v["system"], v["check"]) == ("Insider UCD", "settle matching")
    ]
    return dict(verdict)


async def test_setup_probes_an_account_without_custom_params_and_doctor_flags_a_mismatch(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    env = _env(clean_emulators, client, task_queue)
    # Given an account whose profile reads return default event params only
    clean_emulators.insider_reads(custom_event_params=False)
    async with running_worker(client, task_queue, clean_emulators):
        # When doctor runs before setup insider has probed the account
        unprobed = await asyncio.to_thread(run_cli, env, "doctor", "--json")
        # And setup insider runs
        setup = await asyncio.to_thread(run_cli, env, "setup", "insider", "--json")
        # And doctor runs after it, and with event_id matching set explicitly
        probed = await asyncio.to_thread(run_cli, env, "doctor", "--json")
        forced_env = {**env, "INSIDER_SETTLE_MATCHING": "event_id"}
        forced = await asyncio.to_thread(run_cli, forced_env, "doctor")

    # Then before setup, doctor fails: the workers would match by event_id
    assert unprobed.returncode == 1, unprobed.stdout + unprobed.stderr
    before = _matching_verdict(unprobed.stdout)
    assert before["status"] == "FAIL"
    assert "ct-insider setup insider" in before["detail"]
    # And setup stores fingerprint for the workers, leaving no probe profile behind
    assert setup.returncode == 0, setup.stderr
    report = json.loads(setup.stdout)["settle_matching"]
    assert report["probed"] == {
        "matching": "fingerprint",
        "event_id_returned": False,
        "timestamp_returned": True,
        "reads": 1,
    }
    assert report["workers"]["source"] == "probe"
    assert _stored_matching(clean_emulators)["matching"] == "fingerprint"
    assert _probe_profiles(clean_emulators) == []
    # And after setup every check passes
    assert probed.returncode == 0, probed.stdout + probed.stderr
    assert _matching_verdict(probed.stdout)["status"] == "OK"
    # And INSIDER_SETTLE_MATCHING=event_id is flagged, naming the setting
    assert forced.returncode == 1, forced.stdout
    [line] = [line for line in forced.stdout.splitlines() if "settle matching" in line]
    assert line.startswith("FAIL")
    assert "INSIDER_SETTLE_MATCHING" in line
    assert _last_line(forced.stdout) == "doctor: FAILED: Insider UCD (exit 1)"


def _scopes_without(emulators: Emulators, left_out: str) -> str:
    names = [n for n in default_scope_names() if n != left_out]
    return " ".join(f"{name}:{emulators.project_key}" for name in names)


async def test_doctor_passes_with_a_worker_and_pinpoints_a_wrong_insider_token(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    env = _env(clean_emulators, client, task_queue)
    async with running_worker(client, task_queue, clean_emulators):
        # When doctor runs while a worker polls both task queues
        healthy = await asyncio.to_thread(run_cli, env, "doctor", "--json")
        # When the UCD token is wrong
        wrong = {**env, "INSIDER_API_KEY": "not-the-ucd-token"}
        refused = await asyncio.to_thread(run_cli, wrong, "doctor")
        # When the scopes lack standalone prices
        narrow = {**env, "CTP_SCOPES": _scopes_without(clean_emulators, "view_standalone_prices")}
        unscoped = await asyncio.to_thread(run_cli, narrow, "doctor")
        # When the example rules are in use without the dev stack's opt-in
        production = {**env, "CT_INSIDER_MAPPING_ALLOW_EXAMPLE": "false"}
        example = await asyncio.to_thread(run_cli, production, "doctor")

    # Then every check passes (schedules may only warn)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    verdicts = json.loads(healthy.stdout)["verdicts"]
    checks = {(v["system"], v["check"]): v["status"] for v in verdicts}
    assert checks.pop(("Temporal", "schedules")) in ("OK", "WARN")
    # (the example rules, which the emulated demo account opts into, only warn)
    assert checks.pop(("configuration", "mapping rules")) == "WARN"
    assert set(checks.values()) == {"OK"}
    assert {
        ("commercetools", "token and a read"),
        ("commercetools", "scopes"),
        ("Insider UCD", "token"),
        ("Insider catalog", "token"),
        ("Insider UCD", "settle matching"),
        ("Temporal", "task queue"),
        ("Temporal", "journey task queue"),
    } <= set(checks)
    # And with the wrong token it exits 3, naming Insider UCD (and only it) last
    assert refused.returncode == 3, refused.stdout
    lines = refused.stdout.strip().splitlines()
    assert any(line.startswith("FAIL") and "Insider UCD" in line for line in lines)
    assert _last_line(refused.stdout) == "doctor: FAILED: Insider UCD (exit 3)"
    assert "Traceback" not in refused.stderr
    # And without the standalone prices scope it exits 1 naming the scope ...
    assert unscoped.returncode == 1, unscoped.stdout
    assert _last_line(unscoped.stdout) == "doctor: FAILED: commercetools (exit 1)"
    [scopes_line] = [line for line in unscoped.stdout.splitlines() if "scopes" in line]
    assert scopes_line.startswith("FAIL")
    assert f"view_standalone_prices:{clean_emulators.project_key}" in scopes_line
    # ... which the emulator, like commercetools, refuses to such a token
    token = httpx.post(
        f"{clean_emulators.ct_url}/oauth/token",
        auth=(clean_emulators.client_id, clean_emulators.client_secret),
        data={"grant_type": "client_credentials", "scope": narrow["CTP_SCOPES"]},
    ).json()["access_token"]
    answer = httpx.get(
        f"{clean_emulators.ct_url}/{clean_emulators.project_key}/standalone-prices",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 403
    assert answer.json()["errors"][0]["code"] == "insufficient_scope"
    # And with the example rules and no opt-in it fails the mapping rules, exit 2, saying why
    assert example.returncode == 2, example.stdout
    [rules_line] = [
        line for line in example.stdout.splitlines() if line.startswith("FAIL configuration")
    ]
    assert "mapping rules" in rules_line
    assert "refusing the example mapping rules" in " ".join(example.stdout.split())
    assert _last_line(example.stdout) == "doctor: FAILED: mapping rules (exit 2)"


async def test_doctor_names_an_unreachable_temporal_without_a_traceback(
    client: Client, task_queue: str, emulators: Emulators
) -> None:
    # Given a Temporal address where nothing listens
    closed = f"127.0.0.1:{free_port()}"
    env = {**_env(emulators, client, task_queue), "TEMPORAL_ADDRESS": closed}

    # When doctor runs
    run = await asyncio.to_thread(run_cli, env, "doctor", "--json")

    # Then it exits 3, naming Temporal, and prints no traceback
    assert run.returncode == 3, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert _last_line(run.stderr) == "doctor: FAILED: Temporal (exit 3)"
    report = json.loads(run.stdout)
    assert report["failing"] == ["Temporal"]
    [connect] = [v for v in report["verdicts"] if v["system"] == "Temporal"]
    assert connect["status"] == "FAIL"
    assert connect["check"] == "connect"
    # ... from the refused connection, not from waiting out its check timeout
    assert connect["detail"].startswith("unreachable: "), connect["detail"]


async def test_setup_temporal_registers_every_search_attribute(
    client: Client, task_queue: str, emulators: Emulators
) -> None:
    env = _env(emulators, client, task_queue)

    # When setup temporal runs twice
    first = await asyncio.to_thread(run_cli, env, "setup", "temporal", "--json")
    second = await asyncio.to_thread(run_cli, env, "setup", "temporal", "--json")

    # Then the namespace knows every attribute the workflows set, and the second run adds none
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["search_attributes_added"] == []
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert {key.name for key in ALL} <= set(listed.custom_attributes)
    assert set(json.loads(first.stdout)["search_attributes_added"]) <= {key.name for key in ALL}
