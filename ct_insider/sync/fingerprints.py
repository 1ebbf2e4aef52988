"""What Insider's catalog last received, per product: so an unchanged product sends nothing.

One commercetools custom object per product (container `ct-insider-catalog-fingerprints`,
key = product id, value = {"<sku>@<locale>": [content hash, price-and-stock hash]}), shared
by every worker on every machine. The split hash tells a price or stock change (a partial
update) from any other change (the whole item again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsConflict

CONTAINER = "ct-insider-catalog-fingerprints"
PRICE_AND_STOCK = ("price", "original_price", "in_stock", "stock_count")
HIDDEN = "hidden"


def _digest(value: dict[str, Any]) -> str:
    return hashlib.sha1(
        json.dumps(value, sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest()


def fingerprint(item: dict[str, Any]) -> tuple[str, str]:
    content = {k: v for k, v in item.items() if k not in PRICE_AND_STOCK}
    price_and_stock = {k: item.get(k) for k in PRICE_AND_STOCK}
    return _digest(content), _digest(price_and_stock)


@dataclass
class ProductPrints:
    prints: dict[str, tuple[str, str]] = field(default_factory=dict)
    version: int = 0  # 0: never stored


class FingerprintStore:
    def __init__(self, ct: CommercetoolsClient, container: str = CONTAINER) -> None:
        self._ct = ct
        self._container = container

    async def load(self, product_ids: Sequence[str]) -> dict[str, ProductPrints]:
        found = {pid: ProductPrints() for pid in product_ids}
        container = json.dumps(self._container)
        for obj in await self._ct.find_in(
            "custom-objects", product_ids, lambda q: f"container={container} and key in ({q})"
        ):
            value = obj.get("value") or {}
            found[str(obj["key"])] = ProductPrints(
                prints={key: (pair[0], pair[1]) for key, pair in value.items()},
                version=int(obj["version"]),
            )
        return found

    async def save(self, product_id: str, prints: ProductPrints) -> None:
        """Write what Insider now holds. A concurrent writer's version is overwritten: both
        computed it from the product's current state, and the later one is the newer."""
        draft = {
            "container": self._container,
            "key": product_id,
            "value": {key: list(pair) for key, pair in prints.prints.items()},
            "version": prints.version,
        }
        try:
            await self._ct.post_json("custom-objects", draft)
        except CommercetoolsConflict:
            del draft["version"]  # no version: overwrite whatever is there
            await self._ct.post_json("custom-objects", draft)
