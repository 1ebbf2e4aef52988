"""Exact money for Insider's JSON numbers."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

from ct_insider.commercetools.models import Money


class InexactAmount(ValueError):
    """An amount no JSON double carries exactly (commercetools allows centAmount up to 2^63
    and 20 fraction digits): its record is refused with this reason, never rounded."""


def json_number(amount: Decimal) -> float:
    """A Decimal as the JSON number Insider wants, exactly or not at all (InexactAmount).

    Python writes a float's shortest repr, so `129.99` is sent as `129.99`, never
    `129.98999...`; the float is exact when that repr reads back as the same decimal (any
    decimal of at most 15 significant digits, trailing zeros aside, such as 10^15 cents).
    """
    number = float(amount)
    if not math.isfinite(number) or Decimal(repr(number)) != amount:
        raise InexactAmount(f"amount {amount} has more digits than a JSON double keeps exactly")
    return number


def amount(money: Money) -> float:
    return json_number(money.amount)


def per_unit(total: Money, quantity: int) -> float:
    """A line total divided by its quantity, rounded half-even to the currency's digits."""
    if quantity <= 0:
        return amount(total)
    exponent = Decimal(1).scaleb(-total.fraction_digits)
    return json_number((total.amount / quantity).quantize(exponent, rounding=ROUND_HALF_EVEN))
