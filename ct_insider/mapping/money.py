"""Exact money for Insider's JSON numbers."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from ct_insider.commercetools.models import Money


def json_number(amount: Decimal) -> float:
    """A Decimal as the JSON number Insider wants.

    float() of a decimal with at most 15 significant digits round-trips, and Python
    writes the shortest repr, so `129.99` is sent as `129.99`, never `129.98999...`.
    """
    if len(amount.as_tuple().digits) > 15:
        raise ValueError(f"amount {amount} has more digits than a JSON double keeps exactly")
    return float(amount)


def amount(money: Money) -> float:
    return json_number(money.amount)


def per_unit(total: Money, quantity: int) -> float:
    """A line total divided by its quantity, rounded half-even to the currency's digits."""
    if quantity <= 0:
        return amount(total)
    exponent = Decimal(1).scaleb(-total.fraction_digits)
    return json_number((total.amount / quantity).quantize(exponent, rounding=ROUND_HALF_EVEN))
