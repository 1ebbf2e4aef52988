"""The commercetools Subscription the connector needs, and bringing a project in line with it.

The draft is built from SubscriptionSettings (destination, key, format) and the list of
notifications the bridge consumes (ct_insider.commercetools.notifications). Applying it is
idempotent: absent -> created; present and different -> updated with changeDestination /
setMessages / setChanges; equal -> nothing is written.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsNotFound
from ct_insider.commercetools.notifications import change_resource_types, message_types
from ct_insider.config import SubscriptionSettings

# Destination fields that hold credentials: never printed.
SECRET_FIELDS = frozenset({"connectionString", "accessKey", "accessSecret", "apiSecret"})
# Fields commercetools derives itself (EventBridge's partner event source).
DERIVED_FIELDS = frozenset({"source"})


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def destination(settings: SubscriptionSettings) -> dict[str, Any]:
    """The destination object of the draft (settings have checked its fields are set)."""
    s = settings
    kind = s.destination
    if kind == "GoogleCloudPubSub":
        fields: dict[str, Any] = {"projectId": s.gcp_project_id, "topic": s.gcp_topic}
    elif kind in ("SQS", "SNS"):
        fields = (
            {"queueUrl": s.sqs_queue_url, "region": s.aws_region}
            if kind == "SQS"
            else {"topicArn": s.sns_topic_arn}
        )
        fields["authenticationMode"] = s.aws_auth_mode
        if s.aws_auth_mode == "Credentials":
            fields["accessKey"] = _secret(s.aws_access_key)
            fields["accessSecret"] = _secret(s.aws_access_secret)
    elif kind == "EventBridge":
        fields = {"region": s.aws_region, "accountId": s.aws_account_id}
    elif kind == "AzureServiceBus":
        fields = {"connectionString": _secret(s.azure_connection_string)}
    elif kind == "EventGrid":
        fields = {"uri": s.eventgrid_uri, "accessKey": _secret(s.eventgrid_access_key)}
    else:
        fields = {
            "bootstrapServer": s.confluent_bootstrap_server,
            "apiKey": s.confluent_api_key,
            "apiSecret": _secret(s.confluent_api_secret),
            "acks": s.confluent_acks,
            "topic": s.confluent_topic,
        }
        if s.confluent_key:
            fields["key"] = s.confluent_key
    return {"type": kind, **fields}


def subscription_draft(settings: SubscriptionSettings, *, carts: bool = False) -> dict[str, Any]:
    """The SubscriptionDraft: every message and change type the bridge routes (cart
    changes too with `carts`: CART_EVENTS_ENABLED)."""
    fmt: dict[str, str] = (
        {"type": "CloudEvents", "cloudEventsVersion": "1.0"}
        if settings.format == "CloudEvents"
        else {"type": "Platform"}
    )
    return {
        "key": settings.key,
        "destination": destination(settings),
        "messages": [
            {"resourceTypeId": resource, "types": list(types)}
            for resource, types in message_types(carts).items()
        ],
        "changes": [{"resourceTypeId": resource} for resource in change_resource_types(carts)],
        "format": fmt,
    }


def masked(value: Any) -> Any:
    """A draft, subscription or action list with destination credentials replaced."""
    if isinstance(value, dict):
        return {k: ("****" if k in SECRET_FIELDS and v else masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def _messages(value: Any) -> dict[str, tuple[str, ...]]:
    return {
        str(m.get("resourceTypeId")): tuple(sorted(m.get("types") or []))
        for m in value or []
        if isinstance(m, dict)
    }


def _changes(value: Any) -> frozenset[str]:
    return frozenset(str(c.get("resourceTypeId")) for c in value or [] if isinstance(c, dict))


def _same_destination(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    # Only the fields we set: commercetools may add derived or defaulted ones.
    return all(current.get(k) == v for k, v in wanted.items() if k not in DERIVED_FIELDS)


def update_actions(current: dict[str, Any], draft: dict[str, Any]) -> list[dict[str, Any]]:
    """The update actions that turn the stored subscription into the draft (none if equal)."""
    actions: list[dict[str, Any]] = []
    if not _same_destination(current.get("destination") or {}, draft["destination"]):
        actions.append({"action": "changeDestination", "destination": draft["destination"]})
    if _messages(current.get("messages")) != _messages(draft["messages"]):
        actions.append({"action": "setMessages", "messages": draft["messages"]})
    if _changes(current.get("changes")) != _changes(draft["changes"]):
        actions.append({"action": "setChanges", "changes": draft["changes"]})
    return actions


def format_of(subscription: dict[str, Any]) -> str:
    return str((subscription.get("format") or {}).get("type") or "Platform")


Outcome = Literal["created", "updated", "unchanged", "would create", "would update"]


class SubscriptionResult(BaseModel):
    key: str
    outcome: Outcome
    changed: list[str]  # destination, messages, changes
    version: int | None = None
    subscription: dict[str, Any]  # what commercetools stores (or would), credentials masked


class FormatMismatch(Exception):
    """commercetools cannot change a subscription's format: it must be deleted first."""


async def ensure_subscription(
    ct: CommercetoolsClient, draft: dict[str, Any], *, dry_run: bool = False
) -> SubscriptionResult:
    key = str(draft["key"])
    try:
        current: dict[str, Any] | None = await ct.get_json(f"subscriptions/key={key}")
    except CommercetoolsNotFound:
        current = None
    if current is None:
        stored = draft if dry_run else await ct.post_json("subscriptions", draft)
        return SubscriptionResult(
            key=key,
            outcome="would create" if dry_run else "created",
            changed=["destination", "messages", "changes"],
            version=None if dry_run else stored.get("version"),
            subscription=masked(stored),
        )
    if format_of(current) != draft["format"]["type"]:
        raise FormatMismatch(
            f"subscription {key} delivers the {format_of(current)} format, the configuration "
            f"asks for {draft['format']['type']}; commercetools cannot change a format: "
            f"delete subscription {key} and run setup again"
        )
    actions = update_actions(current, draft)
    changed = [
        {"changeDestination": "destination", "setMessages": "messages", "setChanges": "changes"}[
            a["action"]
        ]
        for a in actions
    ]
    if not actions:
        outcome: Outcome = "unchanged"
        stored = current
    elif dry_run:
        outcome, stored = "would update", {**current, **{c: draft[c] for c in changed}}
    else:
        outcome = "updated"
        stored = await ct.post_json(
            f"subscriptions/key={key}", {"version": current["version"], "actions": actions}
        )
    return SubscriptionResult(
        key=key,
        outcome=outcome,
        changed=changed,
        version=stored.get("version"),
        subscription=masked(stored),
    )
