"""What the bridge refuses before accepting a journey signal, and why its byte budget keeps
every delivery batch of a shard well under Temporal's 2 MB per payload."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.journey import DeliverInput, DeliverResult
from bridge.admission import SignalRefusal, admit
from bridge.commit import ShardPart
from bridge.routing import storefront_signal
from ct_insider.journeys.delivery import DeliveryOutcome
from ct_insider.journeys.intake import take_batch
from ct_insider.journeys.memory import ShardMemory
from ct_insider.journeys.plan import DeliveryContext, plan_delivery
from ct_insider.journeys.signals import (
    MAX_SIGNAL_BYTES,
    JourneyIdentity,
    JourneySignal,
    Market,
    encoded_size,
)
from ct_insider.journeys.storefront import EventIdentity, StorefrontEvent
from ct_insider.mapping.config import MappingConfig
from ct_insider.temporal import DATA_CONVERTER
from workflows.journey_shard import ShardSettings, settle_input

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024


def _view(category: str) -> JourneySignal:
    event = StorefrontEvent(
        event_id="e-1",
        type="product_view",
        occurred_at=NOW,
        identity=EventIdentity(anonymous_id="a-1"),
        sku="SKU-1",
        categories=[category],
    )
    return storefront_signal(event)


def weighing(size: int) -> JourneySignal:
    """A product view whose category name brings it to exactly `size` bytes."""
    shortest = _view("x")
    signal = _view("x" * (1 + size - encoded_size(shortest)))
    assert encoded_size(signal) == size
    return signal


def test_a_signal_at_the_budget_is_admitted_as_its_shard_receives_it() -> None:
    # Given a signal of exactly MAX_SIGNAL_BYTES
    signal = weighing(MAX_SIGNAL_BYTES)
    # When the bridge admits it
    admitted = admit(signal)
    # Then it goes to its visitor's shard, as the JSON a commit window carries
    assert admitted == ShardPart(
        "anonymous-a-1", signal.model_dump_json(exclude_defaults=True).encode()
    )


def test_a_signal_one_byte_over_the_budget_is_refused_naming_the_limit() -> None:
    # When the bridge is handed a signal one byte over the budget
    refused = admit(weighing(MAX_SIGNAL_BYTES + 1))
    # Then it is refused, saying how big it is and what the limit is
    assert isinstance(refused, SignalRefusal)
    assert refused.cause == "oversized"
    assert f"is {MAX_SIGNAL_BYTES + 1:,} bytes" in refused.reason
    assert f"limit of {MAX_SIGNAL_BYTES:,} bytes per signal" in refused.reason


def test_a_signal_that_names_nobody_is_refused() -> None:
    # Given an order signal with no customer, visitor or email
    signal = JourneySignal(
        dedupe_key="m-1",
        kind="order",
        type="OrderCreated",
        occurred_at=NOW,
        identity=JourneyIdentity(),
        resource_id="o-1",
    )
    # When the bridge is handed it, Then it is refused: no journey owns it
    assert admit(signal) == SignalRefusal("names_nobody", "names no customer, visitor or email")


def _heaviest(n: int) -> JourneySignal:
    """The heaviest signal the bridge admits, with everything the shard adds to it: a market
    filled in from the identity's earlier signals (the longest values the bridge lets
    through), its flags, a re-drive's letter."""
    return weighing(MAX_SIGNAL_BYTES).model_copy(
        update={
            "dedupe_key": f"e-{n}",
            "market": Market(
                channel="c" * 64, currency="EUR", language="en_US", country="US", store="s" * 256
            ),
            "doubt": True,
            "accepted_in": 2**31,
            "accepted_by_update": True,
            "redrive_of": f"{'k' * 40}@{2**31}",
        }
    )


def _batch_of(pending: list[JourneySignal]) -> list[JourneySignal]:
    settings = ShardSettings()
    memory = ShardMemory(seen_capacity=16, identity_capacity=16, deleted_capacity=16)
    return take_batch(memory, pending, settings.max_batch, NOW, settings.max_batch_bytes).signals


def _payload_bytes(value: object) -> int:
    [payload] = DATA_CONVERTER.payload_converter.to_payloads([value])
    return len(payload.data)


def test_a_delivery_batch_of_the_heaviest_signals_stays_well_under_temporals_limit() -> None:
    # Given a shard with a full batch's count of the heaviest signals pending
    pending = [_heaviest(n) for n in range(ShardSettings().max_batch)]
    # When it takes a batch (a local activity's input)
    batch = _batch_of(pending)
    delivery = DeliverInput(lane=f"{'q' * 200}-shard-999", signals=batch, check_interruption=True)
    # Then the batch is cut by bytes, not by count
    assert 1 < len(batch) < len(pending)
    # And the payload is well under Temporal's limit: at most 60% of it
    assert _payload_bytes(delivery) <= 0.6 * TEMPORAL_PAYLOAD_LIMIT


def _cart_view(n: int, lines: int) -> JourneySignal:
    products = [
        {
            "sku": f"SKU-{line:05d}-XL-BLUE",
            "quantity": 2,
            "price": "129.99",
            "sale_price": "99.99",
            "name": f"Organic cotton crew-neck T-shirt, blue, size XL, line {line}",
            "image_url": f"https://images.cdn.shop.example.com/p/sku-{line:05d}/1200.jpg",
            "url": f"https://shop.example.com/en-us/p/organic-cotton-crew-neck-{line:05d}",
            "categories": ["Women", "Tops", "T-shirts"],
        }
        for line in range(lines)
    ]
    event = StorefrontEvent.model_validate(
        {
            "event_id": f"cart-view-{n}",
            "type": "cart_view",
            "occurred_at": NOW.isoformat(),
            "identity": {"anonymous_id": f"visitor-{n}"},
            "cart_id": f"cart-{n}",
            "currency": "EUR",
            "locale": "de-DE",
            "products": products,
        }
    )
    return storefront_signal(event)


def test_a_cart_view_of_100_lines_is_admitted() -> None:
    # Given a storefront cart view of 100 lines with names, prices, images, URLs, categories
    signal = _cart_view(0, lines=100)
    # When the bridge is handed it, Then it is admitted
    assert isinstance(admit(signal), ShardPart)


def test_a_batch_of_100_line_carts_all_in_doubt_stays_well_under_temporals_limit() -> None:
    # Given a shard with a full batch's count of 100-line cart views pending
    pending = [_cart_view(n, lines=100) for n in range(ShardSettings().max_batch)]
    batch = _batch_of(pending)
    # When every user of the batch is in doubt (a 5xx answer): one Insider event per line
    plan = plan_delivery(batch, DeliveryContext(config=MappingConfig()))
    users = [user for wave in plan.waves for user in wave]
    assert sum(len(user.events) for user in users) == 100 * len(batch)
    result = DeliverResult(outcome=DeliveryOutcome(in_doubt=users))
    settlement = settle_input("q" * 200, batch, users)
    # Then the delivery's result and the settlement's input stay well under Temporal's limit
    assert _payload_bytes(result) <= 0.6 * TEMPORAL_PAYLOAD_LIMIT
    assert _payload_bytes(settlement) <= 0.6 * TEMPORAL_PAYLOAD_LIMIT
