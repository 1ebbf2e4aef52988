"""A SKU's replenishment period and a purchase's due date (pure).

The period is the product attribute the settings name (e.g. `replenishment-days`), read
from the purchased variant first, then from the product's own attributes; where neither
has it, and learning is on, the customer's own interval: the median gap between their
purchases of that SKU up to this one (at least `min_purchases` of them).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ct_insider.commercetools.models import Attribute
from ct_insider.replenishment.model import PeriodSource

SECONDS_PER_DAY = 86_400.0
# A period longer than this is no replenishment (a typo, `1e9`): it is ignored like a text.
# Bounded too so a due date is always a datetime (a timedelta of 1e9 days overflows).
MAX_PERIOD_DAYS = 3_660.0


@dataclass(frozen=True)
class Period:
    days: float
    source: PeriodSource


def attribute_days(attributes: Iterable[Attribute | dict[str, Any]], name: str) -> float | None:
    """The attribute's value as a positive number of days; None when absent or unusable
    (a number, or a text holding one; an enum's key or label; anything else is ignored)."""
    for attribute in attributes:
        attr_name = attribute.name if isinstance(attribute, Attribute) else attribute.get("name")
        if attr_name != name:
            continue
        value = attribute.value if isinstance(attribute, Attribute) else attribute.get("value")
        return _days(value)
    return None


def _days(value: object) -> float | None:
    if isinstance(value, dict):  # an enum or localized enum: its key names the days
        value = value.get("key", value.get("label"))
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        days = float(value)
    elif isinstance(value, str):
        try:
            days = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return days if math.isfinite(days) and 0 < days <= MAX_PERIOD_DAYS else None


def learned_days(
    purchase_times: Sequence[datetime],
    up_to: datetime,
    min_purchases: int = 2,
    day_seconds: float = SECONDS_PER_DAY,
) -> float | None:
    """The median gap (days of `day_seconds`) between distinct purchases at or before
    `up_to`; None with fewer than `min_purchases` (at least 2: one gap) or when the median
    is not positive."""
    moments = sorted({t for t in purchase_times if t <= up_to})
    if len(moments) < max(2, min_purchases):
        return None
    gaps = [(b - a).total_seconds() / day_seconds for a, b in itertools.pairwise(moments)]
    median = statistics.median(gaps)
    return median if median > 0 else None


def resolve_period(
    variant_days: float | None, product_days: float | None, learned: float | None
) -> Period | None:
    """The attribute wins (variant over product); the learned interval only without one."""
    if variant_days is not None:
        return Period(variant_days, "attribute")
    if product_days is not None:
        return Period(product_days, "attribute")
    if learned is not None:
        return Period(learned, "learned")
    return None


def due_at(purchased_at: datetime, period_days: float, day_seconds: float) -> datetime:
    """When a purchase's reminder is due, in UTC; `day_seconds` is 86,400 but in tests. A due
    date past the calendar's end is never: datetime.max in UTC. (In UTC, because a moment near
    the end in a zone west of UTC overflows when its reminder's timestamp is written in UTC.)"""
    try:
        return purchased_at.astimezone(UTC) + timedelta(seconds=period_days * day_seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)
