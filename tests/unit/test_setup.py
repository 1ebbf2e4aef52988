"""The pure parts of `ct-insider setup`: scopes, the subscription draft and its update
actions, and the InOne schema the mapping sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr, ValidationError

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.notifications import MESSAGE_TYPES, consumes
from ct_insider.commercetools.scopes import FEATURES, default_scope_names, missing_scopes
from ct_insider.config import CommercetoolsSettings, SubscriptionSettings
from ct_insider.mapping.config import MappingConfig
from ct_insider.setup.inone import inone_requirements
from ct_insider.setup.subscription import (
    FormatMismatch,
    ensure_subscription,
    masked,
    subscription_draft,
    update_actions,
)
from ct_insider.setup.verify import check_scopes
from tests.golden import cases, given
from tests.unit import test_customer_mapping, test_order_mapping, test_storefront_mapping

PROJECT = "shop"
FIXTURES = Path(__file__).parent.parent / "fixtures"


def _settings(**values: Any) -> SubscriptionSettings:
    return SubscriptionSettings.model_validate(values)


PUBSUB = {"destination": "GoogleCloudPubSub", "gcp_project_id": "p", "gcp_topic": "t"}


# -- scopes ---------------------------------------------------------------------------------


def test_the_default_scopes_are_exactly_what_the_features_need() -> None:
    settings = CommercetoolsSettings(
        project_key=PROJECT,
        client_id="c",
        client_secret="s",
        auth_url="https://auth",
        api_url="https://api",
    )
    granted = settings.effective_scopes.split()
    assert f"view_standalone_prices:{PROJECT}" in granted
    assert missing_scopes(granted, PROJECT) == []
    assert len(granted) == len(set(granted)) == len(default_scope_names(FEATURES))


def test_a_token_without_standalone_prices_is_named_with_the_feature_needing_it() -> None:
    granted = [f"{n}:{PROJECT}" for n in default_scope_names() if n != "view_standalone_prices"]
    [missing] = missing_scopes(granted, PROJECT)
    assert missing.scope == f"view_standalone_prices:{PROJECT}"
    assert missing.features == ("catalog",)


def test_broader_scopes_cover_narrower_ones_of_the_same_project_only() -> None:
    assert missing_scopes([f"manage_project:{PROJECT}"], PROJECT) == []
    broad = [
        f"{n}:{PROJECT}"
        for n in (
            "manage_customers",
            "view_customer_groups",
            "manage_orders",
            "view_payments",
            "view_discount_codes",
            "manage_products",
            "view_categories",
            "view_standalone_prices",
            "manage_key_value_documents",
        )
    ]
    assert missing_scopes(broad, PROJECT) == []
    other_project = ["manage_project:elsewhere", f"view_customers:{PROJECT}"]
    named = [m.scope for m in missing_scopes(other_project, PROJECT)]
    assert f"view_orders:{PROJECT}" in named
    assert f"view_customers:{PROJECT}" not in named


# -- subscription ---------------------------------------------------------------------------


def test_the_draft_asks_for_exactly_what_the_bridge_routes() -> None:
    draft = subscription_draft(_settings(**PUBSUB))
    assert draft["key"] == "ct-insider"
    assert draft["destination"] == {"type": "GoogleCloudPubSub", "projectId": "p", "topic": "t"}
    assert draft["format"] == {"type": "Platform"}
    for message in draft["messages"]:
        resource = message["resourceTypeId"]
        assert tuple(message["types"]) == MESSAGE_TYPES[resource]
        for message_type in message["types"] or ["AnyType"]:
            assert consumes(resource, "Message", message_type)
    for change in draft["changes"]:
        assert consumes(change["resourceTypeId"], "Message", "x") is False
        assert consumes(change["resourceTypeId"], "ResourceUpdated", "ResourceUpdated")
    # Not subscribed, so the bridge acknowledges them as ignored
    assert not consumes("order", "Message", "OrderDeleted")
    assert not consumes("cart", "Message", "CartCreated")
    assert not consumes("product", "ResourceUpdated", "ResourceUpdated")


def test_cloud_events_format_and_credentials_are_masked_in_output() -> None:
    draft = subscription_draft(
        _settings(
            destination="AzureServiceBus",
            azure_connection_string="Endpoint=sb://x/;SharedAccessKey=secret",
            format="CloudEvents",
        )
    )
    assert draft["format"] == {"type": "CloudEvents", "cloudEventsVersion": "1.0"}
    assert draft["destination"]["connectionString"].endswith("secret")
    shown = masked(draft)
    assert shown["destination"]["connectionString"] == "****"
    assert "secret" not in str(shown)


def test_a_destination_missing_a_field_names_the_variable() -> None:
    with pytest.raises(ValidationError, match="CT_INSIDER_SUBSCRIPTION_GCP_TOPIC"):
        _settings(destination="GoogleCloudPubSub", gcp_project_id="p")
    with pytest.raises(ValidationError, match="CT_INSIDER_SUBSCRIPTION_AWS_ACCESS_SECRET"):
        _settings(
            destination="SQS",
            sqs_queue_url="https://sqs.eu-west-1.amazonaws.com/1/q",
            aws_region="eu-west-1",
            aws_auth_mode="Credentials",
            aws_access_key="k",
        )


def test_update_actions_change_only_what_differs() -> None:
    draft = subscription_draft(_settings(**PUBSUB))
    stored = {**draft, "id": "s-1", "version": 3, "status": "Healthy"}
    # Type order inside a message subscription does not matter
    stored["messages"] = [
        {**m, "types": list(reversed(m["types"]))} for m in reversed(draft["messages"])
    ]
    assert update_actions(stored, draft) == []

    moved = subscription_draft(_settings(**{**PUBSUB, "gcp_topic": "t2"}))
    assert [a["action"] for a in update_actions(stored, moved)] == ["changeDestination"]

    fewer = {**stored, "messages": stored["messages"][1:], "changes": []}
    assert [a["action"] for a in update_actions(fewer, draft)] == ["setMessages", "setChanges"]


def test_an_eventbridge_source_commercetools_derives_is_no_difference() -> None:
    draft = subscription_draft(
        _settings(destination="EventBridge", aws_region="eu-west-1", aws_account_id="123")
    )
    stored_destination = {
        **draft["destination"],
        "source": f"aws.partner/commercetools.com/{PROJECT}/ct-insider",
    }
    assert update_actions({**draft, "destination": stored_destination}, draft) == []


# -- InOne ----------------------------------------------------------------------------------


def _custom_names(output: dict[str, Any]) -> tuple[set[str], dict[str, set[str]]]:
    """Custom attributes, and custom params per event name, in a mapper's output."""
    attributes: set[str] = set()
    params: dict[str, set[str]] = {}
    users = [output.get("user"), output] if "user" in output else [output]
    for user in users:
        if user and user.get("attributes"):
            attributes |= set((user["attributes"].get("custom") or {}).keys())
    for event in output.get("events") or []:
        custom = (event.get("event_params") or {}).get("custom") or {}
        params.setdefault(event["event_name"], set()).update(custom)
    return attributes, params


@pytest.mark.parametrize(
    ("module", "folder"),
    [
        (test_customer_mapping, "customer_mapping"),
        (test_order_mapping, "order_mapping"),
        (test_storefront_mapping, "storefront_mapping"),
    ],
)
def test_every_custom_name_a_mapper_sends_is_listed_for_inone(module: Any, folder: str) -> None:
    seen = 0
    for case in cases(FIXTURES / folder):
        config = MappingConfig.model_validate(given(FIXTURES / folder, case).get("config") or {})
        required = inone_requirements(config)
        listed = {event.name: set(event.params) for event in required.events}
        attributes, params = _custom_names(module.mapped(case))
        assert attributes <= set(required.custom_attributes), case
        for name, names in params.items():
            assert name in listed, (case, name)
            assert names <= listed[name], (case, name, names - listed[name])
        seen += len(attributes) + len(params)
    assert seen > 0


def test_configured_names_reach_the_inone_list() -> None:
    config = MappingConfig.model_validate(
        {
            "custom_field_attributes": {"loyaltyTier": "loyalty_tier"},
            "orders": {"refund_event": "order_refunded", "anonymous_identifier": "visitor_id"},
            "catalog": {"product_attributes": {"material": "material"}},
        }
    )
    required = inone_requirements(config)
    assert "loyalty_tier" in required.custom_attributes
    assert "order_refunded" in required.custom_events
    assert "purchase_refund" not in required.custom_events
    assert "login" in required.custom_events
    assert "purchase" not in required.custom_events
    assert "visitor_id" in required.identifiers
    assert required.catalog_product_attributes == ["material"]


# -- against commercetools' answers (respx) --------------------------------------------------

CT_SETTINGS = CommercetoolsSettings(
    project_key=PROJECT,
    client_id="id",
    client_secret=SecretStr("s"),
    auth_url="https://auth.test",
    api_url="https://api.test",
)


def _token(mock: respx.MockRouter) -> respx.Route:
    return mock.post("https://auth.test/oauth/token").mock(
        return_value=httpx.Response(
            200, json={"access_token": "t", "expires_in": 172800, "scope": ""}
        )
    )


@respx.mock
async def test_a_subscription_in_another_format_is_reported_not_touched() -> None:
    _token(respx.mock)
    draft = subscription_draft(_settings(**PUBSUB))
    stored = {**draft, "id": "s-1", "version": 2, "format": {"type": "CloudEvents"}}
    respx.get("https://api.test/shop/subscriptions/key=ct-insider").mock(
        return_value=httpx.Response(200, json=stored)
    )
    writes = respx.post(url__startswith="https://api.test/shop/subscriptions")
    async with CommercetoolsClient(CT_SETTINGS, http=httpx.AsyncClient()) as ct:
        with pytest.raises(FormatMismatch, match="delete subscription ct-insider"):
            await ensure_subscription(ct, draft)
    assert writes.call_count == 0


@respx.mock
async def test_a_dry_run_reads_but_creates_nothing() -> None:
    _token(respx.mock)
    respx.get("https://api.test/shop/subscriptions/key=ct-insider").mock(
        return_value=httpx.Response(404, json={"statusCode": 404, "errors": []})
    )
    writes = respx.post(url__startswith="https://api.test/shop/subscriptions")
    draft = subscription_draft(_settings(**PUBSUB))
    async with CommercetoolsClient(CT_SETTINGS, http=httpx.AsyncClient()) as ct:
        result = await ensure_subscription(ct, draft, dry_run=True)
    assert (result.outcome, writes.call_count) == ("would create", 0)


@respx.mock
async def test_scopes_the_api_client_lacks_are_named_after_commercetools_refuses_them() -> None:
    # commercetools refuses a token asking for a scope the API client does not have; asked
    # without a scope it grants every scope the client has.
    client_has = [f"{n}:{PROJECT}" for n in default_scope_names() if n != "view_discount_codes"]

    def token(request: httpx.Request) -> httpx.Response:
        if b"scope=" in request.content:
            return httpx.Response(400, json={"error": "invalid_scope", "message": "invalid"})
        return httpx.Response(
            200, json={"access_token": "t", "expires_in": 1, "scope": " ".join(client_has)}
        )

    respx.post("https://auth.test/oauth/token").mock(side_effect=token)
    check = await check_scopes(CT_SETTINGS, http=httpx.AsyncClient())
    assert [(m.scope, m.where) for m in check.missing] == [
        (f"view_discount_codes:{PROJECT}", "API client")
    ]
