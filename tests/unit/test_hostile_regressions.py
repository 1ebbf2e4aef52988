"""Regressions for the defects the hostile-input property tests found (test_hostile_mapping.py):
each case is the smallest input that broke a mapper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from ct_insider.carts.lines import CartRecord, snapshot
from ct_insider.commercetools.models import Customer, Order, ProductProjection
from ct_insider.journeys.storefront import INTAKE, StorefrontEvent
from ct_insider.mapping import money, normalize
from ct_insider.mapping.catalog import CatalogRules, map_product
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import map_customer
from ct_insider.mapping.orders import OrderContext, map_order
from ct_insider.replenishment.periods import MAX_PERIOD_DAYS, attribute_days, due_at
from emulators.insider.validation import validate_catalog_item, validate_user

AT = "2026-11-26T18:30:00Z"
LONG_MAX = 2**63 - 1  # commercetools' centAmount is a Long


def _money(cents: int, digits: int = 2, currency: str = "EUR") -> dict[str, Any]:
    return {"currencyCode": currency, "centAmount": cents, "fractionDigits": digits}


def _order(cents: int) -> Order:
    line = {
        "id": "li-1",
        "name": {"en": "Tea"},
        "variant": {"id": 1, "sku": "TEA"},
        "price": {"value": _money(cents)},
        "quantity": 1,
    }
    return Order.model_validate(
        {
            "id": "o-1",
            "version": 1,
            "customerId": "c-1",
            "lineItems": [line],
            "totalPrice": _money(cents),
            "createdAt": AT,
            "lastModifiedAt": AT,
        }
    )


def test_a_non_ascii_country_is_no_country() -> None:
    # Given a customer whose address country is two non-ASCII letters
    customer = Customer.model_validate(
        {
            "id": "c-1",
            "version": 1,
            "addresses": [{"country": "ÄÖ"}],
            "createdAt": AT,
            "lastModifiedAt": AT,
        }
    )
    # When mapped, Then no country is sent, and Insider accepts the user
    assert normalize.country_code("ÄÖ") is None
    assert normalize.country_code("de") == "DE"
    mapped = map_customer(customer, MappingConfig())
    assert mapped.user is not None
    assert mapped.user.attributes is not None
    assert mapped.user.attributes.country is None
    assert validate_user(0, mapped.user.to_json_dict()) == {}


def test_an_amount_is_sent_exactly_or_refused() -> None:
    # Given amounts with trailing zeros, beyond a double's digits, or beyond its range
    # Then 10^15 cents (16 digits, exact as a double) is sent; the others are refused
    assert money.json_number(Decimal(10**15)) == 1e15
    assert money.json_number(Decimal("129.990000000000000000")) == 129.99
    for inexact in ("0.12345678901234567", "1e400", str(LONG_MAX)):
        with pytest.raises(money.InexactAmount):
            money.json_number(Decimal(inexact))


def test_an_order_with_an_amount_no_double_carries_is_rejected_with_a_reason() -> None:
    # Given an order of commercetools' largest centAmount
    order = _order(LONG_MAX)
    # When mapped, Then it is rejected, saying why, instead of raising
    mapped = map_order(order, MappingConfig(), OrderContext())
    assert mapped.rejection is not None
    assert "more digits than a JSON double keeps exactly" in mapped.rejection
    assert mapped.user() is None
    # And an ordinary amount still maps
    assert map_order(_order(12_999), MappingConfig(), OrderContext()).rejection is None


def test_a_variant_price_no_double_carries_is_a_rejected_item() -> None:
    # Given a product whose USD price has 19 digits
    product = ProductProjection.model_validate(
        {
            "id": "p-1",
            "version": 1,
            "name": {"en": "Tea"},
            "slug": {"en": "tea"},
            "masterVariant": {
                "id": 1,
                "sku": "TEA",
                "images": [{"url": "https://img.test/tea.jpg"}],
                "prices": [{"value": _money(LONG_MAX, currency="USD")}],
            },
        }
    )
    rules = CatalogRules.model_validate(
        {"markets": [{"locale": "en_US", "languages": ["en"], "currency": "USD"}]}
    )
    # When mapped, Then the item is rejected with the reason, not raised
    [item] = map_product(
        product, rules, taxonomy=[], inventory={}, at=datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert item.item is None
    assert item.rejection is not None
    assert item.rejection.startswith("price: amount")


def test_a_cart_line_with_an_amount_no_double_carries_is_skipped() -> None:
    # Given a cart with one ordinary line and one of the largest centAmount
    def line(sku: str, cents: int) -> dict[str, Any]:
        return {
            "id": sku,
            "variant": {"id": 1, "sku": sku},
            "price": {"value": _money(cents)},
            "quantity": 1,
        }

    cart = CartRecord.model_validate(
        {
            "id": "cart-1",
            "version": 3,
            "lastModifiedAt": AT,
            "customerId": "c-1",
            "lineItems": [line("OK", 100), line("HUGE", LONG_MAX)],
            "totalPrice": _money(LONG_MAX),
        }
    )
    # When its snapshot is taken, Then the huge line is counted as skipped, the total left out
    snap = snapshot(cart, MappingConfig())
    assert [x.sku for x in snap.lines] == ["OK"]
    assert snap.skipped_lines == 1
    assert snap.total is None


def _storefront(**fields: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "occurred_at": AT,
        "identity": {"anonymous_id": "a-1"},
        **fields,
    }


@pytest.mark.parametrize("price", ["0.12345678901234567", "1e400"])
def test_a_storefront_price_no_double_carries_is_refused(price: str) -> None:
    # Given a product view whose price cannot be sent exactly
    document = _storefront(type="product_view", sku="S", price=price)
    # When validated, Then it is refused (the bridge's 422) with the reason
    with pytest.raises(ValidationError, match="more digits than a JSON double keeps exactly"):
        StorefrontEvent.model_validate(document, context=INTAKE)


def test_a_cart_view_line_without_a_price_is_refused() -> None:
    # Given a cart view whose second line has no price (Insider requires unit_sale_price)
    products = [{"sku": "A", "price": "1"}, {"sku": "B"}]
    document = _storefront(type="cart_view", cart_id="c", currency="EUR", products=products)
    # When validated, Then it is refused, naming the line
    with pytest.raises(ValidationError, match=r"cart_view products \[1\] need price or sale_price"):
        StorefrontEvent.model_validate(document, context=INTAKE)
    # And a sale price alone is enough
    products[1]["sale_price"] = "2"
    assert StorefrontEvent.model_validate(document, context=INTAKE).products[
        1
    ].sale_price == Decimal(2)


def test_an_absurd_period_is_no_period_and_a_due_date_never_overflows() -> None:
    # Given replenishment periods of a billion days, and a purchase in year 9999
    attributes = [{"name": "days", "value": v} for v in (1e9,)]
    # Then the period is ignored, the longest accepted one stays, and the due date is "never"
    assert attribute_days(attributes, "days") is None
    assert attribute_days([{"name": "days", "value": MAX_PERIOD_DAYS}], "days") == MAX_PERIOD_DAYS
    late = datetime(9999, 12, 1, tzinfo=timezone(timedelta(hours=-12)))
    never = due_at(late, MAX_PERIOD_DAYS, 86_400.0)
    assert never == datetime.max.replace(tzinfo=UTC)
    assert normalize.timestamp(never) == "9999-12-31T23:59:59Z"  # its reminder can be written
    # And a due date near the end, west of UTC, is one its reminder can be written for too
    west = datetime(9999, 12, 1, tzinfo=timezone(timedelta(hours=-12)))
    assert normalize.timestamp(due_at(west, 30.9, 86_400.0)) == "9999-12-31T23:59:59Z"


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("https://img.test/ü 1.png", "https://img.test/%C3%BC%201.png"),
        (" HTTPS://img.test/a.jpg ", "https://img.test/a.jpg"),
        ("//cdn.test/a.jpg", "https://cdn.test/a.jpg"),
        ("https://img.test/a%20b.jpg?w=1&h=2#x", "https://img.test/a%20b.jpg?w=1&h=2#x"),
        ("ftp://img.test/a.jpg", None),
        ("/images/a.jpg", None),
        ("https://", None),
        ("", None),
    ],
)
def test_a_url_is_sent_as_the_catalog_takes_it_or_not_at_all(given: str, sent: str | None) -> None:
    # Given an image URL as commercetools holds it, When normalized, Then Insider takes it
    assert normalize.web_url(given) == sent
    if sent is not None:
        assert (
            validate_catalog_item(
                {"item_id": "x", "locale": "en_US", "image_url": sent}, {"en_US"}, partial=True
            )
            == []
        )


def _variant_product(sku: str, images: list[str]) -> ProductProjection:
    return ProductProjection.model_validate(
        {
            "id": "p-1",
            "version": 1,
            "name": {"en": "Tea"},
            "slug": {"en": "tea"},
            "masterVariant": {
                "id": 1,
                "sku": sku,
                "images": [{"url": url} for url in images],
                "prices": [{"value": _money(100, currency="USD")}],
            },
        }
    )


def test_a_sku_over_insiders_item_id_limit_is_a_rejected_item() -> None:
    # Given variants with a 128- and a 129-character SKU, and a first image Insider cannot show
    rules = CatalogRules.model_validate(
        {"markets": [{"locale": "en_US", "languages": ["en"], "currency": "USD"}]}
    )
    at = datetime(2026, 12, 1, tzinfo=UTC)
    images = ["ftp://img.test/a.jpg", "https://img.test/b c.jpg"]
    [fits] = map_product(
        _variant_product("S" * 128, images), rules, taxonomy=[], inventory={}, at=at
    )
    [over] = map_product(
        _variant_product("S" * 129, images), rules, taxonomy=[], inventory={}, at=at
    )
    # Then the first is an item Insider accepts, with the first image it can show
    assert fits.item is not None
    assert fits.item["image_url"] == "https://img.test/b%20c.jpg"
    assert validate_catalog_item(fits.item, {"en_US"}, partial=False) == []
    # And the second is rejected with the reason
    assert over.item is None
    assert over.rejection == "SKU longer than 128 characters (Insider's item_id limit)"


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "0999-01-01T00:00:00Z"]
)
def test_a_storefront_moment_outside_1970_to_9998_is_refused(moment: str) -> None:
    # Given a product view dated at the calendar's edge (its UTC moment overflows, or is no
    # RFC 3339 date Insider reads)
    document = _storefront(type="product_view", sku="S", occurred_at=moment)
    # When the bridge validates it, Then it is refused with the reason
    with pytest.raises(ValidationError, match="occurred_at must be a moment from 1970 to 9998"):
        StorefrontEvent.model_validate(document, context=INTAKE)


def test_stored_events_decode_whatever_rules_intake_added_since() -> None:
    # Given events the bridge accepted before its intake rules existed, as a Temporal payload
    # holds them (decoded without the intake context)
    stored = [
        _storefront(type="product_view", sku="S", occurred_at="0999-01-01T00:00:00Z"),
        _storefront(type="product_view", sku="S", price="0.12345678901234567"),
        _storefront(type="cart_view", cart_id="c", currency="EUR", products=[{"sku": "A"}]),
    ]
    # When decoded, Then none fails (a workflow decoding it would stall)
    for document in stored:
        assert StorefrontEvent.model_validate(document).event_id == "e-1"


def test_a_timestamp_always_has_a_four_digit_year() -> None:
    # Given moments before the year 1000 and ordinary ones
    # Then each is written as RFC 3339 in UTC with whole seconds
    assert normalize.timestamp(datetime(999, 1, 1, tzinfo=UTC)) == "0999-01-01T00:00:00Z"
    moment = datetime(2026, 11, 26, 18, 30, 0, 250_000, tzinfo=UTC)
    assert normalize.timestamp(moment) == "2026-11-26T18:30:00Z"
    assert normalize.timestamp(datetime(2026, 11, 26, 18, 30)) == "2026-11-26T18:30:00Z"
