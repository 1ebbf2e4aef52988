"""What a cart's changes become in Insider: pure functions, no I/O.

A cart's workflow keeps what it last told Insider about the cart (`SentCart`). Each new
snapshot is compared with it: a SKU added or with more units is one `item_added_to_cart`
(quantity: the difference), fewer units or gone one `item_removed_from_cart`, a cart that
empties one `cart_cleared` (Insider resets its view of the cart; no removals then). Every
event carries the cart id as `event_group_id` and the market (locale; channel, country and
store as custom params, as storefront events do).

Event ids are deterministic - `cart:<cart id>@<cart version>:<sku>` - so a redelivered,
retried or replayed observation is recognised by the journey shards' dedupe (and by the
doubt settlement, which matches on the id), never sent twice. A cart id's versions only
grow, even across workflows of the same cart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ct_insider.carts.lines import CartLine, CartSnapshot
from ct_insider.insider.models import Event
from ct_insider.journeys.signals import JourneySignal
from ct_insider.mapping import normalize

ITEM_ADDED_EVENT = "item_added_to_cart"
ITEM_REMOVED_EVENT = "item_removed_from_cart"
CART_CLEARED_EVENT = "cart_cleared"
# Custom event: create it in InOne (docs/operations.md, "Carts").
CART_ABANDONED_EVENT = "cart_abandoned"
# Items listed in a cart_abandoned event (its arrays); `item_count` counts them all.
MAX_REMINDER_ITEMS = 50
# Custom params of cart events (to define in InOne: ct_insider/setup/inone.py).
CART_EVENT_PARAMS = ("event_id", "channel", "country", "store")
CART_ABANDONED_PARAMS = (
    *CART_EVENT_PARAMS,
    "cart_id",
    "reminder",
    "skus",
    "quantities",
    "unit_prices",
    "unit_sale_prices",
    "item_count",
    "total",
    "cart_url",
)


class SentCart(BaseModel):
    """What Insider was told about a cart: whose it is and its lines then."""

    owner: str | None = None  # the routing key the events went to
    lines: list[CartLine] = Field(default_factory=list)


class LineChange(BaseModel):
    line: CartLine  # the line now (added, fewer units), or as it was (gone)
    delta: int  # units added (> 0) or removed (< 0)


class Observation(BaseModel):
    """What one snapshot means: the signals to hand to the journey shards, what Insider
    will then know, and whether the lines changed (a change re-arms the reminders)."""

    signals: list[JourneySignal] = Field(default_factory=list)
    sent: SentCart
    lines_changed: bool = False
    no_identifier: bool = False


def diff_lines(before: list[CartLine], after: list[CartLine]) -> list[LineChange]:
    """One change per SKU whose quantity differs, in SKU order."""
    old = {line.sku: line for line in before}
    new = {line.sku: line for line in after}
    changes: list[LineChange] = []
    for sku in sorted(old.keys() | new.keys()):
        was = old[sku].quantity if sku in old else 0
        now = new[sku].quantity if sku in new else 0
        if now != was:
            changes.append(LineChange(line=new.get(sku) or old[sku], delta=now - was))
    return changes


def _common(snap: CartSnapshot, event_id: str) -> dict[str, Any]:
    market = snap.market
    custom = {
        "event_id": event_id,
        "channel": market.channel or "web",
        "country": market.country,
        "store": market.store,
    }
    return {
        "event_group_id": snap.cart_id,
        "currency": market.currency,
        "locale": market.language,
        "custom": {key: value for key, value in custom.items() if value is not None},
    }


def _line_params(line: CartLine, quantity: int) -> dict[str, Any]:
    return {
        "product_id": line.sku,
        "name": line.name,
        "unit_price": line.unit_price,
        "unit_sale_price": line.unit_sale_price,
        "quantity": quantity,
        "currency": line.currency,
        "product_image_url": line.image_url,
        "url": line.url,
    }


def _signal(snap: CartSnapshot, key: str, event: Event, at: datetime) -> JourneySignal:
    return JourneySignal(
        dedupe_key=key,
        kind="cart",
        type=event.event_name,
        occurred_at=at,
        identity=snap.owner,
        resource_id=snap.cart_id,
        resource_version=snap.version,
        market=snap.market,
        cart_event=event,
    )


def _event(name: str, at: datetime, params: dict[str, Any]) -> Event:
    return Event(
        event_name=name,
        timestamp=normalize.timestamp(at),
        event_params={key: value for key, value in params.items() if value is not None},
    )


def observe(sent: SentCart, snap: CartSnapshot) -> Observation:
    """The events a snapshot calls for, compared with what Insider was told.

    A cart whose owner changed (a visitor's cart a customer signed in to) starts from
    nothing for its new owner: its lines are added to the new profile; the old profile is
    left as it is (Insider merges a visitor into the customer where both ids were seen)."""
    owner = snap.routing_key()
    if owner is None:
        # Nobody to tell: nothing sent, and Insider still knows what it knew.
        return Observation(sent=sent, no_identifier=True)
    base = sent.lines if sent.owner in (owner, None) else []
    changes = diff_lines(base, snap.lines)
    after = SentCart(owner=owner, lines=list(snap.lines))
    if not changes:
        return Observation(sent=after)
    at = snap.modified_at
    prefix = f"cart:{snap.cart_id}@{snap.version}"
    if not snap.lines:
        key = f"{prefix}:cleared"
        event = _event(CART_CLEARED_EVENT, at, _common(snap, key))
        return Observation(signals=[_signal(snap, key, event, at)], sent=after, lines_changed=True)
    signals = []
    for change in changes:
        key = f"{prefix}:{change.line.sku}"
        name = ITEM_ADDED_EVENT if change.delta > 0 else ITEM_REMOVED_EVENT
        params = {**_common(snap, key), **_line_params(change.line, abs(change.delta))}
        signals.append(_signal(snap, key, _event(name, at, params), at))
    return Observation(signals=signals, sent=after, lines_changed=True)


def reminder_signal(
    snap: CartSnapshot,
    *,
    armed_version: int,
    number: int,
    due_at: datetime,
    cart_url: str | None,
) -> JourneySignal:
    """The `number`th cart_abandoned reminder (1-based) of the inactivity that began with
    the cart's change at `armed_version`: its id names both, so it is sent once whatever
    repeats, and a later inactivity's reminders are new events."""
    key = f"cart:{snap.cart_id}@{armed_version}:abandoned:{number}"
    listed = snap.lines[:MAX_REMINDER_ITEMS]
    params = _common(snap, key)
    params["custom"].update(
        {
            "cart_id": snap.cart_id,
            "reminder": number,
            "skus": [line.sku for line in listed],
            "quantities": [line.quantity for line in listed],
            "unit_prices": [line.unit_price for line in listed],
            "unit_sale_prices": [line.unit_sale_price for line in listed],
            "item_count": sum(line.quantity for line in snap.lines),
            "total": snap.total,
            **({"cart_url": cart_url} if cart_url else {}),
        }
    )
    params["custom"] = {k: v for k, v in params["custom"].items() if v is not None}
    return _signal(snap, key, _event(CART_ABANDONED_EVENT, due_at, params), due_at)


def remindable(snap: CartSnapshot) -> bool:
    """A reminder is due for an Active cart with items that names someone."""
    return snap.state == "Active" and bool(snap.lines) and snap.routing_key() is not None
