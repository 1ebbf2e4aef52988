"""Catalog mapping per market against golden fixtures (tests/fixtures/catalog_mapping)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ct_insider.commercetools.models import (
    InventoryEntry,
    Price,
    ProductProjection,
    StandalonePrice,
)
from ct_insider.mapping.catalog import CatalogRules, map_product
from tests.golden import assert_matches_golden, cases, given

FIXTURES = Path(__file__).parent.parent / "fixtures" / "catalog_mapping"


def mapped(case: str) -> dict[str, Any]:
    inputs = given(FIXTURES, case)
    entries = [InventoryEntry.model_validate(raw) for raw in inputs["inventory"]]
    standalone: dict[str, list[Price]] = {}
    for raw in inputs.get("standalone_prices", []):
        price = StandalonePrice.model_validate(raw)
        if price.active:  # as the sender filters them
            standalone.setdefault(price.sku, []).append(price)
    items = map_product(
        ProductProjection.model_validate(inputs["product"]),
        CatalogRules.model_validate(inputs["rules"]),
        taxonomy=inputs["taxonomy"],
        inventory={(e.sku, e.supply_channel.id if e.supply_channel else None): e for e in entries},
        at=datetime.fromisoformat(inputs["at"].replace("Z", "+00:00")),
        standalone_prices=standalone,
    )
    return {
        "items": [
            {"item_id": i.item_id, "locale": i.locale, "item": i.item, "rejection": i.rejection}
            for i in items
        ]
    }


@pytest.mark.parametrize("case", cases(FIXTURES))
def test_catalog_mapping_matches_golden(case: str) -> None:
    assert_matches_golden(FIXTURES, case, mapped(case))


def test_a_market_locale_must_be_insider_shaped() -> None:
    with pytest.raises(ValueError, match="not an Insider locale"):
        CatalogRules.model_validate(
            {"markets": [{"locale": "en-US", "languages": ["en"], "currency": "USD"}]}
        )
