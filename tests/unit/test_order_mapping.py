"""Order mapping against golden fixtures (tests/fixtures/order_mapping/*.input.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ct_insider.commercetools.models import Order
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.orders import OrderContext, map_order
from tests.golden import assert_matches_golden, cases, given

FIXTURES = Path(__file__).parent.parent / "fixtures" / "order_mapping"


def mapped(case: str) -> dict[str, Any]:
    inputs = given(FIXTURES, case)
    result = map_order(
        Order.model_validate(inputs["order"]),
        MappingConfig.model_validate(inputs["config"]),
        OrderContext(**inputs["context"]),
    )
    return {
        "identifiers": result.identifiers.to_json_dict() if result.identifiers else None,
        "attributes": result.attributes.to_json_dict() if result.attributes else None,
        "events": [{"key": e.key, **e.event.to_json_dict()} for e in result.events],
        "warnings": result.warnings,
        "rejection": result.rejection,
    }


@pytest.mark.parametrize("case", cases(FIXTURES))
def test_order_mapping_matches_golden(case: str) -> None:
    assert_matches_golden(FIXTURES, case, mapped(case))


def test_golden_cases_cover_money_discounts_and_refunds() -> None:
    assert {
        "discounts",
        "currency_zero_digits",
        "currency_three_digits",
        "custom_line_items",
        "refunds_and_cancellation",
        "guest_with_anonymous_id",
        "customer_with_anonymous_id",
        "guest_email_of_registered_customer",
    } <= set(cases(FIXTURES))
