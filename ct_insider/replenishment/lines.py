"""Which timer changes an order's events imply, keyed by the event that carries each (pure).

- `purchase:<line>` of a SKU with a period arms that customer's timer for the SKU;
- `cancellation:<line>` and `refund:return:<item>` disarm the line's timer;
- `refund:transaction:<id>` has no line: when the order's successful refunds reach its
  total (a full refund), it disarms every line; a partial payment refund disarms none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ct_insider.commercetools.models import LineItem, Order, Payment
from ct_insider.logging import pii_digest
from ct_insider.mapping import normalize
from ct_insider.mapping.orders import MappedOrder
from ct_insider.replenishment.model import ArmTimer, DisarmTimer, TimerChange
from ct_insider.replenishment.periods import attribute_days, learned_days, resolve_period

# Keeps a guest's key short and not reversible; 160 bits of a keyed digest never collide.
_KEY_HEX = 40


def customer_key(order: Order) -> str | None:
    """The key of the customer's timer workflow: the customer id, else a keyed hash of the
    guest's email (or anonymous id); never the raw email (it names a Temporal workflow)."""
    if order.customer_id:
        return order.customer_id
    guest = guest_key(order.customer_email)
    if guest:
        return guest
    if order.anonymous_id:
        return "anon-" + pii_digest(order.anonymous_id)[:_KEY_HEX]
    return None


def guest_key(email: str | None) -> str | None:
    """A guest's key: a keyed hash of their normalized email (None without a valid one)."""
    normalized = normalize.email(email)
    return "guest-" + pii_digest(normalized)[:_KEY_HEX] if normalized else None


def purchase_time(order: Order, rule: str) -> datetime:
    """The moment the purchase event carries (mapping's `orders.purchase_time`)."""
    if rule == "completedAt" and order.completed_at:
        return order.completed_at
    return order.created_at


@dataclass(frozen=True)
class PeriodLookups:
    """What resolving periods needs beyond the order: read per batch by the planner."""

    attribute: str
    product_days: Mapping[str, float] = field(default_factory=dict)  # product id -> days
    # sku -> this customer's purchase times of it (learning; empty when off)
    history: Mapping[str, Sequence[datetime]] = field(default_factory=dict)
    min_purchases: int = 2
    day_seconds: float = 86_400.0  # tests scale days down (ReplenishmentSettings)


def variant_days(line: LineItem, attribute: str) -> float | None:
    return attribute_days(line.variant.attributes, attribute)


def timer_changes(
    order: Order, mapped: MappedOrder, lookups: PeriodLookups, purchase_rule: str
) -> dict[str, list[TimerChange]]:
    """event key -> the timer changes its delivery implies (keys without any are left out)."""
    key = customer_key(order)
    if key is None or mapped.identifiers is None:
        return {}
    lines = {line.id: line for line in order.line_items if line.variant.sku}
    bought = purchase_time(order, purchase_rule)
    changes: dict[str, list[TimerChange]] = {}
    for keyed in mapped.events:
        kind, _, rest = keyed.key.partition(":")
        if kind == "purchase" and rest in lines:
            name = keyed.event.event_params.get("name")  # in the order's locale
            arm = _arm(key, mapped, lines[rest], bought, lookups, name)
            if arm is not None:
                changes[keyed.key] = [arm]
        elif kind == "cancellation" and rest in lines:
            changes[keyed.key] = [_disarm(key, order, lines[rest], "cancellation")]
        elif keyed.key.startswith("refund:return:"):
            line = _returned_line(order, rest.removeprefix("return:"), lines)
            if line is not None:
                changes[keyed.key] = [_disarm(key, order, line, "refund")]
        elif keyed.key.startswith("refund:transaction:") and fully_refunded(order):
            changes[keyed.key] = [_disarm(key, order, line, "refund") for line in lines.values()]
    return changes


def _arm(
    key: str,
    mapped: MappedOrder,
    line: LineItem,
    bought: datetime,
    lookups: PeriodLookups,
    name: object,
) -> ArmTimer | None:
    sku = line.variant.sku or ""
    learned = (
        learned_days(
            [*lookups.history.get(sku, ()), bought],
            bought,
            lookups.min_purchases,
            lookups.day_seconds,
        )
        if sku in lookups.history
        else None
    )
    period = resolve_period(
        variant_days(line, lookups.attribute),
        lookups.product_days.get(line.product_id or ""),
        learned,
    )
    if period is None:
        return None
    assert mapped.identifiers is not None
    return ArmTimer(
        customer_key=key,
        identifiers=mapped.identifiers,
        sku=sku,
        order_id=mapped.order_id,
        line_id=line.id,
        name=str(name) if name is not None else None,
        quantity=line.quantity,
        purchased_at=bought,
        period_days=period.days,
        period_source=period.source,
    )


def _disarm(key: str, order: Order, line: LineItem, reason: str) -> DisarmTimer:
    return DisarmTimer(
        customer_key=key,
        sku=line.variant.sku or "",
        order_id=order.id,
        line_id=line.id,
        reason="cancellation" if reason == "cancellation" else "refund",
    )


def _returned_line(order: Order, item_id: str, lines: Mapping[str, LineItem]) -> LineItem | None:
    for info in order.return_info:
        for item in info.items:
            if item.id == item_id and item.line_item_id:
                return lines.get(item.line_item_id)
    return None


def fully_refunded(order: Order) -> bool:
    """Whether the order's successful refund transactions add up to its total. Compared in
    the currency's minor units (centAmount): commercetools-mock gives cart orders a total
    with fractionDigits 0, so amounts would differ by a factor of 100."""
    total = order.total_price
    refunded = 0
    for reference in order.payment_info.payments if order.payment_info else []:
        if reference.obj is None:
            continue
        payment = Payment.model_validate(reference.obj)
        refunded += sum(
            tx.amount.cent_amount
            for tx in payment.transactions
            if tx.type == "Refund"
            and tx.state == "Success"
            and tx.amount.currency_code == total.currency_code
        )
    return total.cent_amount > 0 and refunded >= total.cent_amount


def skus_without_attribute(
    lines: Sequence[LineItem], attribute: str, product_days: Mapping[str, float]
) -> list[str]:
    """SKUs of these lines with no attribute period (learning reads their history)."""
    return [
        line.variant.sku
        for line in lines
        if line.variant.sku
        and variant_days(line, attribute) is None
        and (line.product_id or "") not in product_days
    ]
