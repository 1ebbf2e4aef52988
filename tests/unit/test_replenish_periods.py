"""Replenishment periods and due dates (pure): attribute on the variant or the product, the
customer's learned interval, none; which timer changes an order's events imply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ct_insider.commercetools.models import Attribute, Order
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.orders import OrderContext, map_order
from ct_insider.replenishment.lines import PeriodLookups, customer_key, timer_changes
from ct_insider.replenishment.model import ArmTimer, DisarmTimer
from ct_insider.replenishment.periods import (
    Period,
    attribute_days,
    due_at,
    learned_days,
    resolve_period,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def days(n: float) -> timedelta:
    return timedelta(days=n)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30.0),
        (7.5, 7.5),
        ("14", 14.0),
        ({"key": "60", "label": "60 days"}, 60.0),
        (0, None),
        (-3, None),
        ("monthly", None),
        (True, None),
        (float("nan"), None),
        (None, None),
    ],
)
def test_replenish_attribute_days_takes_positive_numbers_only(
    value: object, expected: float | None
) -> None:
    # Given a variant whose period attribute holds `value`, when read
    found = attribute_days(
        [Attribute(name="replenishment-days", value=value)], "replenishment-days"
    )
    # Then only a positive finite number of days counts
    assert found == expected


def test_replenish_attribute_days_reads_the_configured_name_only() -> None:
    # Given attributes without the configured one, then no period
    assert attribute_days([{"name": "size", "value": 30}], "replenishment-days") is None
    # Given the configured one among others (product-level attributes are plain dicts)
    attrs: list[dict[str, Any]] = [{"name": "size", "value": "M"}, {"name": "refill", "value": 45}]
    assert attribute_days(attrs, "refill") == 45.0


def test_replenish_learned_interval_is_the_median_gap_of_purchases_up_to_this_one() -> None:
    # Given purchases 10, 30 and 20 days apart (median gap 20), and one after the moment
    times = [T0, T0 + days(10), T0 + days(40), T0 + days(60), T0 + days(100)]
    # When learned up to the fourth purchase
    learned = learned_days(times, T0 + days(60))
    # Then the median of 10, 30, 20 days
    assert learned == pytest.approx(20.0)


def test_replenish_learned_interval_needs_two_distinct_purchases() -> None:
    # Given one purchase (twice the same moment: one order with two lines)
    assert learned_days([T0, T0], T0) is None
    # Given two, then one gap
    assert learned_days([T0, T0 + days(12)], T0 + days(12)) == pytest.approx(12.0)
    # Given a configured minimum of three purchases, two are not enough
    assert learned_days([T0, T0 + days(12)], T0 + days(12), min_purchases=3) is None


def test_replenish_period_prefers_the_variant_then_the_product_then_the_learned_one() -> None:
    assert resolve_period(30.0, 60.0, 10.0) == Period(30.0, "attribute")
    assert resolve_period(None, 60.0, 10.0) == Period(60.0, "attribute")
    assert resolve_period(None, None, 10.0) == Period(10.0, "learned")
    assert resolve_period(None, None, None) is None


def test_replenish_due_date_is_the_purchase_plus_the_period_scaled_only_in_tests() -> None:
    assert due_at(T0, 30, 86_400) == T0 + days(30)
    assert due_at(T0, 1.5, 86_400) == T0 + timedelta(hours=36)
    assert due_at(T0, 30, 1.0) == T0 + timedelta(seconds=30)  # tests: a day is a second


def order_record(**overrides: Any) -> dict[str, Any]:
    money = {"currencyCode": "USD", "centAmount": 1000, "fractionDigits": 2}
    record: dict[str, Any] = {
        "id": "order-1",
        "version": 1,
        "customerId": "cust-1",
        "customerEmail": "a@example.com",
        "totalPrice": {"currencyCode": "USD", "centAmount": 2000, "fractionDigits": 2},
        "createdAt": "2026-01-01T00:00:00.000Z",
        "lastModifiedAt": "2026-01-02T00:00:00.000Z",
        "locale": "de",
        "lineItems": [
            {
                "id": "line-a",
                "productId": "prod-a",
                "name": {"en": "Coffee", "de": "Kaffee"},
                "variant": {
                    "sku": "SKU-A",
                    "attributes": [{"name": "replenishment-days", "value": 30}],
                },
                "price": {"value": money},
                "quantity": 2,
            },
            {
                "id": "line-b",
                "productId": "prod-b",
                "name": {"en": "Filter"},
                "variant": {"sku": "SKU-B", "attributes": []},
                "price": {"value": money},
                "quantity": 1,
            },
        ],
    }
    record.update(overrides)
    return record


def changes_of(record: dict[str, Any], lookups: PeriodLookups) -> dict[str, Any]:
    order = Order.model_validate(record)
    mapped = map_order(order, MappingConfig(), OrderContext())
    return timer_changes(order, mapped, lookups, "createdAt")


def test_replenish_purchase_arms_with_the_variant_attribute_and_the_localized_name() -> None:
    # Given an order of SKU-A (variant attribute: 30 days) and SKU-B (none, nothing learned)
    changes = changes_of(order_record(), PeriodLookups(attribute="replenishment-days"))
    # Then only SKU-A's purchase arms, with what the reminder needs
    assert list(changes) == ["purchase:line-a"]
    [arm] = changes["purchase:line-a"]
    assert isinstance(arm, ArmTimer)
    assert (arm.customer_key, arm.sku, arm.quantity, arm.name) == ("cust-1", "SKU-A", 2, "Kaffee")
    assert (arm.period_days, arm.period_source, arm.purchased_at) == (30.0, "attribute", T0)
    assert arm.identifiers.uuid == "cust-1"


def test_replenish_purchase_arms_with_the_product_attribute_or_the_learned_interval() -> None:
    # Given SKU-B's product has a period, and SKU-A's customer bought SKU-B before
    lookups = PeriodLookups(attribute="replenishment-days", product_days={"prod-b": 14.0})
    [arm] = changes_of(order_record(), lookups)["purchase:line-b"]
    assert isinstance(arm, ArmTimer)
    assert (arm.period_days, arm.period_source) == (14.0, "attribute")
    # When the product has none but the customer bought SKU-B 20 days and 10 days earlier
    learned = PeriodLookups(
        attribute="replenishment-days", history={"SKU-B": [T0 - days(20), T0 - days(10)]}
    )
    [arm] = changes_of(order_record(), learned)["purchase:line-b"]
    assert isinstance(arm, ArmTimer)
    assert (arm.period_days, arm.period_source) == (10.0, "learned")


def test_replenish_cancellation_and_line_refund_disarm_their_line() -> None:
    # Given a cancelled order with a refunded return of line-a
    record = order_record(
        orderState="Cancelled",
        returnInfo=[
            {
                "items": [
                    {
                        "id": "ret-1",
                        "quantity": 1,
                        "lineItemId": "line-a",
                        "paymentState": "Refunded",
                        "shipmentState": "Returned",
                    }
                ]
            }
        ],
    )
    changes = changes_of(record, PeriodLookups(attribute="replenishment-days"))
    # Then the cancellation of each line and the return of line-a disarm
    [cancel_a] = changes["cancellation:line-a"]
    [refund_a] = changes["refund:return:ret-1"]
    assert isinstance(cancel_a, DisarmTimer)
    assert cancel_a.reason == "cancellation"
    assert isinstance(refund_a, DisarmTimer)
    assert refund_a.reason == "refund"
    assert (refund_a.sku, refund_a.line_id) == ("SKU-A", "line-a")
    assert "cancellation:line-b" in changes


def payment(amount: int) -> dict[str, Any]:
    money = {"currencyCode": "USD", "centAmount": amount, "fractionDigits": 2}
    return {
        "id": f"pay-{amount}",
        "obj": {
            "id": f"pay-{amount}",
            "version": 1,
            "amountPlanned": money,
            "transactions": [
                {"id": f"tx-{amount}", "type": "Refund", "amount": money, "state": "Success"}
            ],
        },
        "typeId": "payment",
    }


@pytest.mark.parametrize(
    ("refunded", "disarms", "total_digits"), [(2000, 2, 2), (500, 0, 2), (2000, 2, 0)]
)
def test_replenish_payment_refund_disarms_every_line_only_when_full(
    refunded: int, disarms: int, total_digits: int
) -> None:
    # Given an order of 2000 cents (commercetools-mock writes cart orders' totals with
    # fractionDigits 0) with a payment refund of `refunded` cents
    total = {"currencyCode": "USD", "centAmount": 2000, "fractionDigits": total_digits}
    record = order_record(totalPrice=total, paymentInfo={"payments": [payment(refunded)]})
    changes = changes_of(record, PeriodLookups(attribute="replenishment-days"))
    # Then a full refund disarms both lines, a partial one none (no line to tell)
    assert len(changes.get(f"refund:transaction:tx-{refunded}", [])) == disarms


def test_replenish_customer_key_is_never_a_raw_email() -> None:
    # Given a registered customer's order, the key is their id
    assert customer_key(Order.model_validate(order_record())) == "cust-1"
    # Given a guest's order, a keyed hash of the normalized email
    guest = Order.model_validate(order_record(customerId=None, customerEmail=" A@Example.com "))
    key = customer_key(guest)
    assert key is not None
    assert key.startswith("guest-")
    assert "example" not in key
    same = Order.model_validate(order_record(customerId=None, customerEmail="a@example.com"))
    assert customer_key(same) == key
