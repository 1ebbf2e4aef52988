"""The realtime benchmarks' traffic: a visitor population far larger than any cache, the
shapes a shop's storefront and commercetools subscription really send.

- 20,000 identities by default, 90% anonymous visitors (most seen once or twice in a run),
  10% registered customers; each storefront event picks one at random;
- one event per request, or N per request (`{"events": [...]}`, as a storefront's
  batching tracker sends);
- optionally a share of OrderCreated messages (with their payload, as commercetools
  subscriptions deliver them) for seeded orders, whose purchases must arrive exactly once;
- optionally what real senders do that a clean benchmark never does: visitors whose device
  clock runs ahead (a share 5 minutes, a few 9 hours: a time-zone bug), and an
  at-least-once sender that posts a share of its requests again 1 to 300 s later.

Every event happens "now" (when its request is planned to go out) by its sender's clock.
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
    # Visitors whose device clock runs ahead: this share by 5 minutes, this many by 9 hours.
    skewed_share: float = 0.0
    far_skewed: int = 0
    # This share of requests is posted again, 1 to 300 s after the first time.
    redelivered_share: float = 0.0
    bridges: int = 1  # bridge processes, posted to in turn
    max_reads_per_event: float = 0.0  # Insider profile reads allowed per event delivered
    reshard_to: int | None = None  # `ct-insider reshard --shards N`, effective mid-run


SKEW_AHEAD = timedelta(minutes=5)
FAR_SKEW_AHEAD = timedelta(hours=9)
REDELIVERY_DELAY = (1.0, 300.0)  # seconds after the first post

SHAPES = {
    "single": Shape("single", per_request=1, rate=450, events=13_500, target_rate=400),
    "batched": Shape("batched", per_request=25, rate=1_600, events=48_000, target_rate=1_500),
    "orders": Shape(
        "orders", per_request=1, rate=450, events=13_500, order_share=0.05, target_rate=400
    ),
    # Long enough for every shard's dedupe memory to roll over several times.
    "skew": Shape(
        "skew",
        per_request=25,
        rate=1_500,
        events=360_000,
        target_rate=1_450,
        skewed_share=0.001,
        far_skewed=3,
        max_reads_per_event=0.001,
    ),
    # Long enough that the latest redeliveries (300 s) come while traffic still flows.
    "redelivery": Shape(
        "redelivery",
        per_request=25,
        rate=1_500,
        events=540_000,
        target_rate=1_450,
        redelivered_share=0.02,
        max_reads_per_event=0.001,
    ),
    "bridges": Shape(
        "bridges", per_request=25, rate=1_600, events=48_000, target_rate=1_500, bridges=3
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
    posted_at: float | None = None
    accepted_at: float | None = None
    signals: list[dict[str, Any]] = field(default_factory=list)  # for the Temporal floor
    send_at: float = 0.0  # seconds after the run's start
    redelivery: bool = False  # a copy of an earlier request (its keys count there)


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
    clock_ahead = _clocks_ahead(shape, len(people), rng)
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
        person = rng.randrange(len(people))
        batch.append(
            {
                "event_id": event_id,
                "type": rng.choice(STOREFRONT_TYPES),
                "occurred_at": (at + clock_ahead.get(person, timedelta())).isoformat(),
                "identity": people[person],
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
    request_rate = shape.rate * len(requests) / shape.events
    for slot, request in enumerate(requests):
        request.send_at = slot / request_rate
    return _with_redeliveries(shape, requests, rng)


def _clocks_ahead(shape: Shape, people: int, rng: random.Random) -> dict[int, timedelta]:
    """Which visitors' clocks run ahead, and by how much."""
    skewed = rng.sample(range(people), int(people * shape.skewed_share) + shape.far_skewed)
    return {
        person: FAR_SKEW_AHEAD if n < shape.far_skewed else SKEW_AHEAD
        for n, person in enumerate(skewed)
    }


def _with_redeliveries(shape: Shape, requests: list[Request], rng: random.Random) -> list[Request]:
    """The requests plus the copies an at-least-once sender posts again, in sending order."""
    if not shape.redelivered_share:
        return requests
    copies = [
        Request(
            request.path,
            request.body,
            keys=[],
            send_at=request.send_at + rng.uniform(*REDELIVERY_DELAY),
            redelivery=True,
        )
        for request in requests
        if rng.random() < shape.redelivered_share
    ]
    return sorted(requests + copies, key=lambda request: request.send_at)


def _events_request(events: list[dict[str, Any]]) -> Request:
    body: Any = events[0] if len(events) == 1 else {"events": events}
    return Request("/events", body, [(str(e["event_id"]), 1) for e in events])


def events_in(requests: list[Request]) -> int:
    return sum(expected for request in requests for _, expected in request.keys)
