"""Storefront events -> Insider events, against golden fixtures (tests/fixtures/storefront_mapping)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ct_insider.journeys.storefront import StorefrontEvent, map_storefront_event
from tests.golden import assert_matches_golden, cases, given

FIXTURES = Path(__file__).parent.parent / "fixtures" / "storefront_mapping"


def mapped(case: str) -> dict[str, Any]:
    inputs = given(FIXTURES, case)
    market = inputs["market"]
    events = map_storefront_event(
        StorefrontEvent.model_validate(inputs["event"]),
        currency=market["currency"],
        language=market["language"],
        custom=market["custom"],
    )
    return {"events": [event.to_json_dict() for event in events]}


@pytest.mark.parametrize("case", cases(FIXTURES))
def test_storefront_mapping_matches_golden(case: str) -> None:
    assert_matches_golden(FIXTURES, case, mapped(case))


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"type": "add_to_cart"}, "add_to_cart needs sku"),
        ({"type": "cart_view", "currency": "EUR"}, "cart_view needs cart_id"),
        ({"type": "checkout_started", "cart_id": "c"}, "checkout_started needs currency"),
        ({"type": "product_view", "sku": "S", "identity": {}}, "identity needs customer_id"),
        ({"type": "product_view", "sku": "S", "occurred_at": "2026-01-01T00:00:00"}, "timezone"),
        ({"type": "teleport"}, "Input should be 'product_view'"),
    ],
)
def test_invalid_storefront_events_say_why(event: dict[str, Any], message: str) -> None:
    body = {
        "event_id": "e",
        "occurred_at": "2026-01-01T00:00:00Z",
        "identity": {"anonymous_id": "a"},
        **event,
    }
    with pytest.raises(ValidationError, match=message):
        StorefrontEvent.model_validate(body)
