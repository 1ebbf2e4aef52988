"""Cart snapshots and cart events, against golden fixtures (tests/fixtures/cart_mapping),
and the pure parts of cart recovery (delays, line diffs)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ct_insider.carts.delays import MAX_REMINDERS, parse_delays
from ct_insider.carts.events import (
    MAX_REMINDER_ITEMS,
    SentCart,
    diff_lines,
    observe,
    remindable,
    reminder_signal,
)
from ct_insider.carts.lines import (
    MAX_CART_LINES,
    MAX_NAME_CHARS,
    MAX_URL_CHARS,
    CartLine,
    CartRecord,
    snapshot,
)
from ct_insider.journeys.signals import MAX_SIGNAL_BYTES, encoded_size
from ct_insider.mapping.config import MappingConfig
from ct_insider.setup.inone import inone_requirements
from tests.golden import assert_matches_golden, cases, given

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cart_mapping"
CONFIG = MappingConfig()


def mapped(case: str) -> dict[str, Any]:
    inputs = given(FIXTURES, case)
    before = inputs["before"]
    sent = SentCart()
    if before is not None:
        earlier = snapshot(CartRecord.model_validate(before), CONFIG)
        sent = SentCart(owner=earlier.routing_key(), lines=earlier.lines)
    snap = snapshot(CartRecord.model_validate(inputs["cart"]), CONFIG)
    observation = observe(sent, snap)
    signals = observation.signals
    reminder = inputs.get("reminder")
    if reminder is not None:
        signals = [
            reminder_signal(
                snap,
                armed_version=snap.version,
                number=reminder["number"],
                due_at=datetime.fromisoformat(reminder["due_at"]),
                cart_url=reminder["cart_url"],
            )
        ]
    return {
        "snapshot": snap.model_dump(mode="json"),
        "lines_changed": observation.lines_changed,
        "no_identifier": observation.no_identifier,
        "remindable": remindable(snap),
        "signals": [
            {
                "dedupe_key": s.dedupe_key,
                "routing": s.routing(),
                "identity": s.identity.model_dump(exclude_none=True),
                "event": s.cart_event.to_json_dict() if s.cart_event else None,
            }
            for s in signals
        ],
    }


@pytest.mark.parametrize("case", cases(FIXTURES))
def test_abandon_cart_mapping_matches_golden(case: str) -> None:
    assert_matches_golden(FIXTURES, case, mapped(case))


@pytest.mark.parametrize("case", cases(FIXTURES))
def test_abandon_every_cart_custom_param_is_listed_for_inone(case: str) -> None:
    # Given what InOne must define, When a case's cart events are mapped
    listed = {event.name: set(event.params) for event in inone_requirements(CONFIG).events}
    for signal in mapped(case)["signals"]:
        event = signal["event"]
        # Then its event and every custom param it carries are listed
        assert set(event["event_params"].get("custom", {})) <= listed[event["event_name"]]


def test_abandon_cart_events_repeat_identically() -> None:
    # Given a cart observation, when it is worked out again (a retry, a replay)
    # Then the same signals come out, with the same ids
    first, again = mapped("quantities_change"), mapped("quantities_change")
    assert first == again
    keys = [s["dedupe_key"] for s in first["signals"]]
    assert len(keys) == len(set(keys)) == 4


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60m", [3600.0]), ("60m,24h", [3600.0, 90000.0]), (" 90s , 2d ", [90.0, 172890.0])],
)
def test_abandon_delays_are_cumulative(text: str, seconds: list[float]) -> None:
    assert parse_delays(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at least one"),
        ("60", "not a delay"),
        ("1w", "not a delay"),
        ("0m", "positive"),
        (",".join(["1m"] * (MAX_REMINDERS + 1)), "at most"),
    ],
)
def test_abandon_bad_delays_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_delays(text)


def _line(sku: str, quantity: int) -> CartLine:
    return CartLine(sku=sku, quantity=quantity, unit_price=1, unit_sale_price=1, currency="EUR")


def test_abandon_diff_gives_one_change_per_sku_with_the_difference() -> None:
    # Given lines before and after: one up by 2, one down by 1, one gone, one new
    before = [_line("A", 1), _line("B", 3), _line("C", 1)]
    after = [_line("A", 3), _line("B", 2), _line("D", 5)]
    # When diffed
    changes = diff_lines(before, after)
    # Then each SKU whose quantity differs is one change, by its difference
    assert [(c.line.sku, c.delta) for c in changes] == [("A", 2), ("B", -1), ("C", -1), ("D", 5)]
    assert diff_lines(after, after) == []


def _huge_cart(lines: int) -> dict[str, Any]:
    long = "x" * 5000
    return {
        "id": "cart-big",
        "version": 9,
        "lastModifiedAt": "2026-12-01T10:00:00Z",
        "anonymousId": "a",
        "totalPrice": {"currencyCode": "EUR", "centAmount": 1, "fractionDigits": 2},
        "lineItems": [
            {
                "id": f"li-{i}",
                "name": {"en": long},
                "productSlug": {"en": long},
                "variant": {"sku": f"SKU-{i:04d}", "images": [{"url": long}]},
                "price": {"value": {"currencyCode": "EUR", "centAmount": 100}},
                "quantity": 1,
            }
            for i in range(lines)
        ],
    }


def test_abandon_snapshot_is_bounded_at_its_worst() -> None:
    # Given a cart far beyond the bound, every text far too long
    snap = snapshot(CartRecord.model_validate(_huge_cart(MAX_CART_LINES + 50)), CONFIG)
    # Then it follows MAX_CART_LINES lines, counts the rest, and cuts every text
    assert len(snap.lines) == MAX_CART_LINES
    assert snap.skipped_lines == 50
    assert all(len(line.name or "") <= MAX_NAME_CHARS for line in snap.lines)
    assert all(len(line.url or "") <= MAX_URL_CHARS for line in snap.lines)
    assert all(len(line.image_url or "") <= MAX_URL_CHARS for line in snap.lines)
    # And what a workflow carries of it, and every signal it gives, stays within bounds
    assert len(snap.model_dump_json()) < 300_000
    observation = observe(SentCart(), snap)
    assert len(observation.signals) == MAX_CART_LINES
    assert max(encoded_size(s) for s in observation.signals) < MAX_SIGNAL_BYTES
    reminder = reminder_signal(
        snap, armed_version=9, number=1, due_at=snap.modified_at, cart_url=None
    )
    assert reminder.cart_event is not None
    custom = reminder.cart_event.event_params["custom"]
    assert len(custom["skus"]) == MAX_REMINDER_ITEMS
    assert custom["item_count"] == MAX_CART_LINES
    assert encoded_size(reminder) < MAX_SIGNAL_BYTES
    # (Insider's limit: at most 80 custom params per event)
    assert len(custom) <= 80
