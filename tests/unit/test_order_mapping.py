"""Order mapping against golden fixtures (tests/fixtures/order_mapping/*.input.json).

Regenerate an expected file only after reviewing the change:
    UPDATE_GOLDEN=1 pytest tests/unit/test_order_mapping.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ct_insider.commercetools.models import Order
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.orders import OrderContext, map_order

FIXTURES = Path(__file__).parent.parent / "fixtures" / "order_mapping"
CASES = sorted(p.name.removesuffix(".input.json") for p in FIXTURES.glob("*.input.json"))


def mapped(case: str) -> dict[str, Any]:
    given = json.loads((FIXTURES / f"{case}.input.json").read_text())
    result = map_order(
        Order.model_validate(given["order"]),
        MappingConfig.model_validate(given["config"]),
        OrderContext(**given["context"]),
    )
    return {
        "identifiers": result.identifiers.to_json_dict() if result.identifiers else None,
        "attributes": result.attributes.to_json_dict() if result.attributes else None,
        "events": [{"key": e.key, **e.event.to_json_dict()} for e in result.events],
        "warnings": result.warnings,
        "rejection": result.rejection,
    }


@pytest.mark.parametrize("case", CASES)
def test_order_mapping_matches_golden(case: str) -> None:
    expected_path = FIXTURES / f"{case}.expected.json"
    actual = mapped(case)
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(
            json.dumps(actual, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    assert actual == json.loads(expected_path.read_text())
