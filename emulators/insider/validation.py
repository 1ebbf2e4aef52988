"""Insider's per-user upsert validation, with its error keys and messages.

Keys follow Insider's shape `users.<i>.<path>.<rule>`; messages quote its documented texts
where they exist (including its "idenifiers" typo).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
EMAIL = re.compile(r"^.+@.+\..+$")
# Insider's error text quotes ^[a-z0-9][a-zA-Z0-9._-]*$, yet it rejected `homepageView`.
# The safer reading: lowercase snake case only.
EVENT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
LANGUAGE = re.compile(r"^[a-z]{2,3}_[A-Z]{2}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
REQUIRED_EVENT_PARAMS = {
    "purchase": ("event_group_id", "unit_sale_price", "currency", "quantity"),
    "cart_page_view": ("event_group_id", "currency", "unit_sale_price"),
}
BOOL_ATTRIBUTES = ("email_optin", "sms_optin", "whatsapp_optin", "gdpr_optin")
STRING_ATTRIBUTES = ("name", "surname", "gender", "city", "email", "phone_number", "uuid", "lo")


def rfc3339(value: Any, *, require_z: bool = False) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    if require_z and not value.endswith("Z"):
        return False
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def validate_user(
    index: int, user: Any, undefined_events: frozenset[str] = frozenset()
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    prefix = f"users.{index}"

    def add(key: str, message: str) -> None:
        errors.setdefault(f"{prefix}.{key}", []).append(message)

    if not isinstance(user, dict):
        add("type", "user must be an object")
        return errors
    identifiers = user.get("identifiers")
    if not user.get("insider_id") and not (isinstance(identifiers, dict) and identifiers):
        add("identifiers.required", "either insider_id or idenifiers must be specified")
    if isinstance(identifiers, dict):
        phone = identifiers.get("phone_number")
        if phone is not None and not (isinstance(phone, str) and PHONE.match(phone)):
            add(
                r"identifiers.*.regexp(^\+[1-9]\d{6,14}$)",
                f"user has an invalid phone number: {phone}",
            )
        email = identifiers.get("email")
        if email is not None and not (isinstance(email, str) and EMAIL.match(email)):
            add("identifiers.*.regexp(^.+@.+\\..+$)", f"user has an invalid email: {email}")
        uuid = identifiers.get("uuid")
        if uuid is not None and not isinstance(uuid, str):
            add("identifiers.uuid.type", "uuid must be a string")
        custom = identifiers.get("custom")
        if custom is not None and not isinstance(custom, dict):
            add("identifiers.custom.type", "custom identifiers must be an object")
    attributes = user.get("attributes")
    events = user.get("events")
    if not attributes and not events:
        add("attributes.required", "either attributes or events must be specified")
    if isinstance(attributes, dict):
        _validate_attributes(attributes, add)
    elif attributes is not None:
        add("attributes.type", "attributes must be an object")
    if isinstance(events, list):
        for number, event in enumerate(events):
            _validate_event(f"events.{number}", event, add)
            if isinstance(event, dict) and event.get("event_name") in undefined_events:
                add(
                    f"events.{number}.event_name.defined",
                    f"event {event['event_name']} is not defined in InOne",
                )
    elif events is not None:
        add("events.type", "events must be an array")
    return errors


def _validate_attributes(attributes: dict[str, Any], add: Any) -> None:
    for name in BOOL_ATTRIBUTES:
        if name in attributes and not isinstance(attributes[name], bool):
            add(f"attributes.{name}.type", f"{name} must be a boolean")
    for name in STRING_ATTRIBUTES:
        if name in attributes and not isinstance(attributes[name], str):
            add(f"attributes.{name}.type", f"{name} must be a string")
    if "birthday" in attributes and not rfc3339(attributes["birthday"], require_z=True):
        add("attributes.birthday.format", "birthday must be an RFC 3339 date-time ending in Z")
    if "language" in attributes and not (
        isinstance(attributes["language"], str) and LANGUAGE.match(attributes["language"])
    ):
        add("attributes.language.format", "language must look like en_US")
    country = attributes.get("country")
    if country is not None and not (isinstance(country, str) and re.match(r"^[A-Z]{2}$", country)):
        add("attributes.country.format", "country must be an ISO 3166-1 alpha-2 code")
    phone = attributes.get("phone_number")
    if isinstance(phone, str) and not PHONE.match(phone):
        add(
            r"attributes.phone_number.regexp(^\+[1-9]\d{6,14}$)",
            f"user has an invalid phone number: {phone}",
        )
    custom = attributes.get("custom")
    if custom is not None and not isinstance(custom, dict):
        add("attributes.custom.type", "custom attributes must be an object")


def _validate_event(path: str, event: Any, add: Any) -> None:
    if not isinstance(event, dict):
        add(f"{path}.type", "event must be an object")
        return
    name = event.get("event_name")
    if not isinstance(name, str) or not EVENT_NAME.match(name):
        add(f"{path}.event_name.*.regexp(^[a-z0-9][a-zA-Z0-9._-]*$)", f"invalid event name: {name}")
    if not rfc3339(event.get("timestamp")):
        add(f"{path}.timestamp.required", "timestamp must be an RFC 3339 date-time")
    params = event.get("event_params") or {}
    if not isinstance(params, dict):
        add(f"{path}.event_params.type", "event_params must be an object")
        return
    missing = [p for p in REQUIRED_EVENT_PARAMS.get(str(name), ()) if params.get(p) in (None, "")]
    for param in missing:
        add(f"{path}.event_params.*.required", f"{param} parameter is required on {name} event")
    if "currency" in params and not (
        isinstance(params["currency"], str) and CURRENCY.match(params["currency"])
    ):
        add(f"{path}.event_params.currency.format", "currency must be an ISO 4217 code")
    for price in ("unit_price", "unit_sale_price", "shipping_cost"):
        if price in params and (
            isinstance(params[price], bool) or not isinstance(params[price], int | float)
        ):
            add(f"{path}.event_params.{price}.type", f"{price} must be a number")
    if "quantity" in params and (
        isinstance(params["quantity"], bool) or not isinstance(params["quantity"], int)
    ):
        add(f"{path}.event_params.quantity.type", "quantity must be an integer")
    taxonomy = params.get("taxonomy")
    if taxonomy is not None and not (
        isinstance(taxonomy, list) and all(isinstance(t, str) for t in taxonomy)
    ):
        add(f"{path}.event_params.taxonomy.type", "taxonomy must be an array of strings")


CATALOG_REQUIRED = ("item_id", "locale", "name", "url", "image_url")
URL = re.compile(r"^https?://\S+$")


def validate_catalog_item(
    item: Any, known_locales: set[str], *, partial: bool
) -> list[tuple[str, str]]:
    """(field, message) problems of one catalog record; empty when valid."""
    if not isinstance(item, dict):
        return [("record", "Field is invalidated: record must be an object")]
    problems: list[tuple[str, str]] = []
    required = ("item_id", "locale") if partial else CATALOG_REQUIRED
    for name in required:
        if item.get(name) in (None, ""):
            problems.append((name, f"Field is required: '{name}'"))
    item_id = item.get("item_id")
    if isinstance(item_id, str) and len(item_id) > 128:
        problems.append(
            ("item_id", "Field is invalidated: 'item_id' must be at most 128 characters")
        )
    locale = item.get("locale")
    if isinstance(locale, str) and locale and locale not in known_locales:
        problems.append(("locale", f"Field is invalidated: locale '{locale}' does not exist"))
    for name in ("url", "image_url"):
        if (
            name in item
            and item[name] not in (None, "")
            and not (isinstance(item[name], str) and URL.match(item[name]))
        ):
            problems.append((name, f"Field is invalidated: '{name}' must match pattern"))
    has_price, has_original = "price" in item, "original_price" in item
    if has_price != has_original:
        problems.append(
            ("price", "Field is invalidated: 'price' and 'original_price' must be sent together")
        )
    for name in ("price", "original_price", "omnibus_price"):
        value = item.get(name)
        if value is not None and not (
            isinstance(value, dict)
            and all(
                isinstance(k, str)
                and CURRENCY.match(k)
                and isinstance(v, int | float)
                and not isinstance(v, bool)
                for k, v in value.items()
            )
        ):
            problems.append(
                (name, f"Field is invalidated: '{name}' must map currency codes to numbers")
            )
    if "in_stock" in item and item["in_stock"] not in (0, 1):
        problems.append(("in_stock", "Field is invalidated: 'in_stock' must be 0 or 1"))
    if "stock_count" in item and not (
        isinstance(item["stock_count"], int) and item["stock_count"] >= 0
    ):
        problems.append(
            ("stock_count", "Field is invalidated: 'stock_count' must be a non-negative integer")
        )
    if "is_status_passive" in item and item["is_status_passive"] not in (0, 1):
        problems.append(
            ("is_status_passive", "Field is invalidated: 'is_status_passive' must be 0 or 1")
        )
    category = item.get("category")
    if category is not None and not (
        isinstance(category, list) and all(isinstance(c, str) for c in category)
    ):
        problems.append(
            ("category", "Field is invalidated: 'category' must be an array of strings")
        )
    return problems
