"""Every path's events name products by the item id of Insider's catalog in that market
(what the catalog sync sends), because Insider's price-drop and back-in-stock starters
match people's earlier events to catalog items by `product_id`."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ct_insider.carts.events import SentCart, observe, reminder_signal
from ct_insider.carts.lines import CartRecord, snapshot
from ct_insider.commercetools.models import InventoryEntry, Order, ProductProjection
from ct_insider.journeys.storefront import StorefrontEvent, map_storefront_event
from ct_insider.mapping.catalog import CatalogRules, Market, map_product
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.orders import OrderContext, map_order
from tests.golden import given

FIXTURES = Path(__file__).parent.parent / "fixtures"
CATALOG = given(FIXTURES / "catalog_mapping", "three_markets")
ORDER = given(FIXTURES / "order_mapping", "discounts")["order"]
RULES = CatalogRules.model_validate(CATALOG["rules"])
PRODUCT = ProductProjection.model_validate(CATALOG["product"])


def catalog_items() -> set[tuple[str, str]]:
    """(item_id, locale) of every item the catalog sync sends for the product."""
    entries = [InventoryEntry.model_validate(raw) for raw in CATALOG["inventory"]]
    items = map_product(
        PRODUCT,
        RULES,
        taxonomy=CATALOG["taxonomy"],
        inventory={(e.sku, e.supply_channel.id if e.supply_channel else None): e for e in entries},
        at=datetime.fromisoformat(CATALOG["at"].replace("Z", "+00:00")),
    )
    return {(i.item_id, i.locale) for i in items if i.rejection is None}


def line_item(sku: str, market: Market) -> dict[str, Any]:
    """The variant as a cart or order line in the market."""
    line: dict[str, Any] = copy.deepcopy(ORDER["lineItems"][0])
    line["variant"]["sku"] = sku
    line["price"]["value"]["currencyCode"] = market.currency
    line["price"]["discounted"]["value"]["currencyCode"] = market.currency
    line["totalPrice"]["currencyCode"] = market.currency
    return line


def storefront_ids(sku: str, market: Market) -> list[str]:
    event = StorefrontEvent.model_validate(
        {
            "event_id": "e-1",
            "type": "add_to_cart",
            "occurred_at": "2026-12-01T10:00:00Z",
            "identity": {"anonymous_id": "v"},
            "sku": sku,
            "currency": market.currency,
        }
    )
    events = map_storefront_event(event, currency=market.currency, language=None, custom={})
    return [e.event_params["product_id"] for e in events]


def cart_ids(sku: str, market: Market) -> list[str]:
    cart = {
        "id": "cart-1",
        "version": 2,
        "lastModifiedAt": "2026-12-01T10:00:00Z",
        "anonymousId": "v",
        "country": market.country,
        "locale": market.languages[0],
        "lineItems": [line_item(sku, market)],
    }
    snap = snapshot(CartRecord.model_validate(cart), MappingConfig())
    signals = observe(SentCart(), snap).signals
    signals.append(
        reminder_signal(snap, armed_version=2, number=1, due_at=datetime.now(UTC), cart_url=None)
    )
    ids: list[str] = []
    for signal in signals:
        assert signal.cart_event is not None
        params = signal.cart_event.event_params
        ids.extend([params["product_id"]] if "product_id" in params else params["custom"]["skus"])
    return ids


def order_ids(sku: str, market: Market) -> list[str]:
    order = {
        **copy.deepcopy(ORDER),
        "lineItems": [line_item(sku, market)],
        "country": market.country,
    }
    order["totalPrice"]["currencyCode"] = market.currency
    order["shippingInfo"]["price"]["currencyCode"] = market.currency
    mapped = map_order(Order.model_validate(order), MappingConfig(), OrderContext())
    return [e.event.event_params["product_id"] for e in mapped.events]


@pytest.mark.parametrize("path", ["storefront", "cart", "order"])
def test_abandon_every_path_names_products_by_the_catalog_item_id(path: str) -> None:
    # Given the items the catalog sync sends for a product in three markets
    items = catalog_items()
    assert len(items) >= 3
    ids_of = {"storefront": storefront_ids, "cart": cart_ids, "order": order_ids}[path]
    markets = {market.locale: market for market in RULES.markets}
    for sku, locale in sorted(items):
        # When a shopper's event about that item in its market takes the path
        product_ids = ids_of(sku, markets[locale])
        # Then every product_id it carries is that market's catalog item id
        assert product_ids
        for product_id in product_ids:
            assert (product_id, locale) in items, (path, product_id, locale)
