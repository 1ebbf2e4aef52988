"""The typed models parse what the commercetools API serves (and subscription envelopes)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.models import (
    Category,
    Customer,
    MessageDelivery,
    Money,
    Order,
    ProductProjection,
)
from tests.conftest import Emulators

pytestmark = pytest.mark.integration


async def test_models_parse_every_seeded_resource(clean_emulators: Emulators) -> None:
    seeder = clean_emulators.seeder()
    customers = seeder.customers(5)
    skus = seeder.catalog(4)
    seeder.orders(6, customers, skus)
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        parsed_customers = [
            Customer.model_validate(r) async for p in ct.pages("customers") for r in p.results
        ]
        products = [
            ProductProjection.model_validate(r)
            async for p in ct.pages("product-projections")
            for r in p.results
        ]
        categories = [
            Category.model_validate(r) async for p in ct.pages("categories") for r in p.results
        ]
        orders = [Order.model_validate(r) async for p in ct.pages("orders") for r in p.results]
    assert len(parsed_customers) == 5
    assert parsed_customers[0].custom is not None
    assert "gdprOptIn" in parsed_customers[0].custom.fields
    assert sorted(v.sku or "" for p in products for v in p.all_variants) == sorted(skus)
    assert {c.key for c in categories} >= {"apparel", "shoes", "running"}
    running = next(c for c in categories if c.key == "running")
    assert running.parent is not None
    assert len(orders) == 6
    assert all(o.line_items and o.line_items[0].variant.sku in skus for o in orders)
    guest = [o for o in orders if o.customer_id is None]
    assert guest
    assert all(o.customer_email for o in guest)


def test_money_is_exact_for_any_fraction_digits() -> None:
    assert Money(currency_code="EUR", cent_amount=19998, fraction_digits=2).amount == Decimal(
        "199.98"
    )
    assert Money(currency_code="JPY", cent_amount=1500, fraction_digits=0).amount == Decimal("1500")
    assert Money(currency_code="KWD", cent_amount=1234, fraction_digits=3).amount == Decimal(
        "1.234"
    )
    assert Money(currency_code="USD", cent_amount=10, fraction_digits=2).amount + Money(
        currency_code="USD", cent_amount=20, fraction_digits=2
    ).amount == Decimal("0.30")


def test_order_created_delivery_parses_with_its_payload() -> None:
    delivery = MessageDelivery.model_validate(
        {
            "notificationType": "Message",
            "projectKey": "my-project",
            "id": "5b1c",
            "version": 1,
            "sequenceNumber": 1,
            "resource": {"typeId": "order", "id": "b7e1"},
            "resourceVersion": 1,
            "resourceUserProvidedIdentifiers": {"orderNumber": "1000001"},
            "type": "OrderCreated",
            "order": {
                "id": "b7e1",
                "version": 1,
                "orderNumber": "1000001",
                "customerId": "8aae",
                "totalPrice": {
                    "type": "centPrecision",
                    "currencyCode": "EUR",
                    "centAmount": 19998,
                    "fractionDigits": 2,
                },
                "lineItems": [],
                "createdAt": "2026-11-26T18:38:32.924Z",
                "lastModifiedAt": "2026-11-26T18:38:32.924Z",
            },
            "createdAt": "2026-11-26T18:38:32.924Z",
            "lastModifiedAt": "2026-11-26T18:38:32.924Z",
        }
    )
    order = Order.model_validate(delivery.payload()["order"])
    assert (delivery.type, delivery.resource.id, delivery.sequence_number) == (
        "OrderCreated",
        "b7e1",
        1,
    )
    assert order.total_price.amount == Decimal("199.98")
    assert delivery.payload_not_included is None
