"""commercetools subscription deliveries in every shape a retailer can route to HTTP.

- Platform format: a Message, or a ResourceCreated/Updated/Deleted change notification
- CloudEvents 1.0: the Platform payload in `data`
- Google Pub/Sub push (commercetools Connect event apps): base64 Platform JSON in `message.data`
- AWS EventBridge (e.g. via an API destination): the Platform payload in `detail`

All of them become one `Notification`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ct_insider.commercetools.models import (
    ChangeDelivery,
    MessageDelivery,
    UserProvidedIdentifiers,
)
from ct_insider.sync.reports import validation_reasons

EnvelopeFormat = Literal["platform", "cloudevents", "pubsub", "eventbridge"]


class EnvelopeError(ValueError):
    """The body is not a delivery we can read; the message says what is wrong."""


class Notification(BaseModel):
    id: str  # the message id, or "<resource id>@<version>" for a change notification
    envelope: EnvelopeFormat
    notification_type: str  # Message, ResourceCreated, ResourceUpdated, ResourceDeleted
    type: str  # the message type, or the notification type for changes
    resource_type: str
    resource_id: str
    resource_version: int | None = None
    sequence_number: int | None = None
    occurred_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)  # the message type's own fields
    payload_included: bool = True
    # `resourceUserProvidedIdentifiers` (key, customerNumber, externalId, orderNumber, sku):
    # what still names a resource once it is deleted.
    user_provided: dict[str, str] = Field(default_factory=dict)


def _user_provided(identifiers: UserProvidedIdentifiers | None) -> dict[str, str]:
    """The string identifiers by their commercetools names (the slug is localized: left out)."""
    if identifiers is None:
        return {}
    named = identifiers.model_dump(by_alias=True, exclude_none=True, exclude={"slug"})
    return {name: value for name, value in named.items() if isinstance(value, str) and value}


def _platform(body: Any, envelope: EnvelopeFormat) -> Notification | None:
    if not isinstance(body, dict) or "notificationType" not in body:
        raise EnvelopeError("not a commercetools notification: notificationType is missing")
    kind = body["notificationType"]
    resource = body.get("resource")
    if isinstance(resource, dict) and resource.get("typeId") == "subscription":
        return None  # the test notification commercetools sends when a subscription is created
    try:
        if kind == "Message":
            message = MessageDelivery.model_validate(body)
            return Notification(
                id=message.id,
                envelope=envelope,
                notification_type=kind,
                type=message.type,
                resource_type=message.resource.type_id or "",
                resource_id=message.resource.id,
                resource_version=message.resource_version,
                sequence_number=message.sequence_number,
                occurred_at=message.created_at,
                payload=message.payload(),
                payload_included=message.payload_not_included is None,
                user_provided=_user_provided(message.resource_user_provided_identifiers),
            )
        if kind in ("ResourceCreated", "ResourceUpdated", "ResourceDeleted"):
            change = ChangeDelivery.model_validate(body)
            return Notification(
                id=f"{change.resource.id}@{change.version}:{kind}",
                envelope=envelope,
                notification_type=kind,
                type=kind,
                resource_type=change.resource.type_id or "",
                resource_id=change.resource.id,
                resource_version=change.version,
                occurred_at=change.modified_at,
                payload_included=False,
                user_provided=_user_provided(change.resource_user_provided_identifiers),
            )
    except ValidationError as exc:
        raise EnvelopeError(
            f"invalid {kind} notification: {'; '.join(validation_reasons(exc))}"
        ) from exc
    raise EnvelopeError(f"unknown notificationType {kind!r}")


# A \u escape of a UTF-16 surrogate (\ud800-\udfff): json.loads takes a lone one as a
# character no UTF-8 text can hold; answering or storing it fails later (a 500, a payload).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def strict_json(data: bytes) -> Any:
    """json.loads, with a ValueError also for what it lets through but no UTF-8 text holds
    (half a surrogate pair) and for nesting too deep to parse (not a RecursionError)."""
    try:
        value = json.loads(data)
        # Only a body with a surrogate escape pays for the check (an emoji sent escaped is
        # a valid pair; a lone half is no character).
        if _SURROGATE_ESCAPE.search(data):
            json.dumps(value, ensure_ascii=False).encode()
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeEncodeError:
        raise ValueError("a \\u escape names half a surrogate pair") from None
    return value


def envelope_json(data: bytes, what: str) -> Any:
    """`data` as strict JSON (strict_json); EnvelopeError naming `what` if it is none."""
    try:
        return strict_json(data)
    except ValueError as exc:
        raise EnvelopeError(f"{what} is malformed JSON ({exc})") from None


def _decoded_pubsub_data(message: dict[str, Any]) -> Any:
    data = message.get("data")
    if not isinstance(data, str):
        raise EnvelopeError("Pub/Sub push: message.data must be a base64 string")
    try:
        return strict_json(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"Pub/Sub push: message.data is not base64 JSON ({exc})") from exc


def parse_delivery(body: Any) -> Notification | None:
    """The notification in a delivery, or None for the subscription's test notification."""
    if not isinstance(body, dict):
        raise EnvelopeError("a delivery must be a JSON object")
    if isinstance(body.get("message"), dict) and "data" in body["message"]:
        inner = _decoded_pubsub_data(body["message"])
        if isinstance(inner, dict) and "specversion" in inner:
            return _cloudevent(inner, "pubsub")
        return _platform(inner, "pubsub")
    if "detail-type" in body and "detail" in body:
        return _platform(body["detail"], "eventbridge")
    if "specversion" in body:
        return _cloudevent(body, "cloudevents")
    return _platform(body, "platform")


def _cloudevent(body: dict[str, Any], envelope: EnvelopeFormat) -> Notification | None:
    if str(body.get("specversion")) != "1.0":
        raise EnvelopeError(f"unsupported CloudEvents specversion {body.get('specversion')!r}")
    if "data" not in body:
        raise EnvelopeError("CloudEvent without data")
    return _platform(body["data"], envelope)
