"""Product attribute values as the text Insider shows: plain, enum label, or localized."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ct_insider.commercetools.models import Attribute
from ct_insider.mapping import normalize


def attribute_value(attributes: Sequence[Attribute], name: str | None, languages: list[str]) -> Any:
    """The named attribute's value (an enum's label, a localized value in `languages`), or
    None when absent or not a simple value."""
    if name is None:
        return None
    for attribute in attributes:
        if attribute.name != name:
            continue
        value = attribute.value
        if isinstance(value, dict) and "label" in value:
            value = value["label"]
        if isinstance(value, dict):
            return normalize.localized({str(k): str(v) for k, v in value.items()}, languages)
        return value if isinstance(value, str | int | float | bool) else None
    return None
