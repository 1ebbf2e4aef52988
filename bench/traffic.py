"""The realtime benchmarks' traffic: a visitor population far larger than any cache, the
shapes a shop's storefront and commercetools subscription really send.

- 20,000 identities by default, 90% anonymous visitors (most seen once or twice in a run),
  10% registered customers; each storefront event picks one at random;
- one event per request, or N per request (`{"events": [...]}`, as a storefront's
  batching tracker sends);
- optionally a share of OrderCreated messages (with their payload, as commercetools
  subscriptions deliver them) for seeded orders, whose purchases must arrive exactly once.

Every event happens "now" (when its request is planned to go out), as live traffic does.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

STOREFRONT_TYPES = [
    "product_view",
    "product_view",
    "product_view",
    "listing_view",
    "add_to_cart",
    "wishlist_add",
    "remove_from_cart",
]


@dataclass(frozen=True)
class Shape:
    name: str
    per_request: int
    rate: float  # events per second offered
    events: int
    order_share: float = 0.0
    target_rate: float = 0.0  # events per second delivered, at least
    reshard_to: int | None = None  # `ct-insider reshard --shards N`, effective mid-run


SHAPES = {
    "single": Shape("single", per_request=1, rate=450, events=13_500, target_rate=400),
    "batched": Shape("batched", per_request=25, rate=1_600, events=48_000, target_rate=1_500),
    "orders": Shape(
        "orders", per_request=1, rate=450, events=13_500, order_share=0.05, target_rate=400
    ),
    "reshard": Shape(
        "reshard", per_request=25, rate=1_600, events=48_000, target_rate=1_500, reshard_to=8
    ),
}


@dataclass
class Request:
    path: str
    body: Any
    # (key as Insider will show it, events it must become): storefront events by their
    # event id, purchases by order number.
    keys: list[tuple[str, int]]
    accepted_at: float | None = None
    signals: list[dict[str, Any]] = field(default_factory=list)  # for the Temporal floor


def population(identities: int, registered_share: float) -> list[dict[str, str]]:
    registered = int(identities * registered_share)
    return [
        {"customer_id": f"bench-customer-{n}"}
        if n < registered
        else {"anonymous_id": f"visitor-{uuid.UUID(int=random.Random(n).getrandbits(128))}"}
        for n in range(identities)
    ]


def order_message(order: dict[str, Any]) -> dict[str, Any]:
    return {
        "notificationType": "Message",
        "projectKey": "bench",
        "id": str(uuid.uuid4()),
        "version": 1,
        "sequenceNumber": 1,
        "resource": {"typeId": "order", "id": order["id"]},
        "resourceVersion": order["version"],
        "type": "OrderCreated",
        "order": order,
        "createdAt": order["createdAt"],
        "lastModifiedAt": order["createdAt"],
    }


def workload(
    shape: Shape,
    people: list[dict[str, str]],
    skus: list[str],
    orders: list[dict[str, Any]],
    *,
    start: datetime | None = None,
) -> list[Request]:
    """The requests of a run, in sending order; `orders` must hold enough seeded orders."""
    rng = random.Random(11)
    start = start or datetime.now(UTC)
    order_count = int(shape.events * shape.order_share)
    storefront_count = shape.events - order_count
    kinds = ["event"] * storefront_count + ["order"] * order_count
    rng.shuffle(kinds)
    requests: list[Request] = []
    batch: list[dict[str, Any]] = []
    next_order = 0
    for index, kind in enumerate(kinds):
        at = start + timedelta(seconds=index / shape.rate)
        if kind == "order":
            order = orders[next_order]
            next_order += 1
            key = str(order.get("orderNumber") or order["id"])
            requests.append(
                Request(
                    "/webhooks/commercetools",
                    order_message(order),
                    [(key, len(order["lineItems"]))],
                )
            )
            continue
        event_id = str(uuid.UUID(int=rng.getrandbits(128)))
        batch.append(
            {
                "event_id": event_id,
                "type": rng.choice(STOREFRONT_TYPES),
                "occurred_at": at.isoformat(),
                "identity": rng.choice(people),
                "sku": rng.choice(skus),
                "price": "19.99",
                "currency": "USD",
                "locale": "en-US",
                "country": "US",
                "channel": "web",
            }
        )
        if len(batch) == shape.per_request:
            requests.append(_events_request(batch))
            batch = []
    if batch:
        requests.append(_events_request(batch))
    return requests


def _events_request(events: list[dict[str, Any]]) -> Request:
    body: Any = events[0] if len(events) == 1 else {"events": events}
    return Request("/events", body, [(str(e["event_id"]), 1) for e in events])


def events_in(requests: list[Request]) -> int:
    return sum(expected for request in requests for _, expected in request.keys)
