"""What the bridge refuses before accepting a journey signal, and why its byte budget keeps
every delivery batch of a shard well under Temporal's 2 MB per payload."""

from __future__ import annotations

from datetime import UTC, datetime

from activities.journey import DeliverInput
from bridge.admission import SignalRefusal, admit
from bridge.commit import ShardPart
from bridge.routing import storefront_signal
from ct_insider.journeys.signals import (
    MAX_SIGNAL_BYTES,
    JourneyIdentity,
    JourneySignal,
    Market,
    encoded_size,
)
from ct_insider.journeys.storefront import EventIdentity, StorefrontEvent
from ct_insider.temporal import DATA_CONVERTER
from workflows.journey_shard import ShardSettings

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


def test_a_full_delivery_batch_at_the_budget_stays_well_under_temporals_limit() -> None:
    # Given the heaviest signal the bridge admits, with everything the shard adds to it: a
    # market filled in from the identity's earlier signals (the longest values the bridge
    # lets through), its flags, a re-drive's letter
    signal = weighing(MAX_SIGNAL_BYTES).model_copy(
        update={
            "market": Market(
                channel="c" * 64, currency="EUR", language="en_US", country="US", store="s" * 256
            ),
            "doubt": True,
            "accepted_in": 2**31,
            "redrive_of": f"{'k' * 40}@{2**31}",
        }
    )
    # When a shard delivers a full batch of them (a local activity's input)
    batch = DeliverInput(
        lane=f"{'q' * 200}-shard-999",
        signals=[signal] * ShardSettings().max_batch,
        check_interruption=True,
    )
    [payload] = DATA_CONVERTER.payload_converter.to_payloads([batch])
    # Then the payload is well under Temporal's limit: at most 60% of it
    assert len(payload.data) <= 0.6 * TEMPORAL_PAYLOAD_LIMIT, len(payload.data)
