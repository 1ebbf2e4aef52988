"""Customer mapping against golden fixtures (tests/fixtures/customer_mapping/*.input.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ct_insider.commercetools.models import Customer
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import map_customer
from tests.golden import assert_matches_golden, cases, given

FIXTURES = Path(__file__).parent.parent / "fixtures" / "customer_mapping"


def mapped(case: str) -> dict[str, Any]:
    inputs = given(FIXTURES, case)
    result = map_customer(
        Customer.model_validate(inputs["customer"]), MappingConfig.model_validate(inputs["config"])
    )
    return {
        "user": result.user.to_json_dict() if result.user else None,
        "warnings": result.warnings,
        "rejection": result.rejection,
    }


@pytest.mark.parametrize("case", cases(FIXTURES))
def test_customer_mapping_matches_golden(case: str) -> None:
    assert_matches_golden(FIXTURES, case, mapped(case))


def test_there_are_golden_cases() -> None:
    assert {
        "full",
        "invalid_values",
        "no_identifier",
        "store_language_and_renamed_fields",
        "first_address_fallback",
    } <= set(cases(FIXTURES))
