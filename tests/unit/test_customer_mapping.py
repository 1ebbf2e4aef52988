"""Customer mapping against golden fixtures (tests/fixtures/customer_mapping/*.input.json).

Regenerate an expected file only after reviewing the change:
    UPDATE_GOLDEN=1 pytest tests/unit/test_customer_mapping.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ct_insider.commercetools.models import Customer
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import map_customer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "customer_mapping"
CASES = sorted(p.name.removesuffix(".input.json") for p in FIXTURES.glob("*.input.json"))


def mapped(case: str) -> dict[str, Any]:
    given = json.loads((FIXTURES / f"{case}.input.json").read_text())
    result = map_customer(
        Customer.model_validate(given["customer"]), MappingConfig.model_validate(given["config"])
    )
    return {
        "user": result.user.to_json_dict() if result.user else None,
        "warnings": result.warnings,
        "rejection": result.rejection,
    }


@pytest.mark.parametrize("case", CASES)
def test_customer_mapping_matches_golden(case: str) -> None:
    expected_path = FIXTURES / f"{case}.expected.json"
    actual = mapped(case)
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert actual == json.loads(expected_path.read_text())


def test_there_are_golden_cases() -> None:
    assert {"full", "invalid_values", "no_identifier"} <= set(CASES)
