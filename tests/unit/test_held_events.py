"""Which sought events an Insider profile already holds: one read, matched by id, by
fingerprint or by count."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.held import MATCH_PARAMS, READ_SLACK, HeldEventCheck, Sought
from ct_insider.insider.models import Event, Identifiers


@dataclass
class Read:
    identifiers: dict[str, Any]
    attributes: list[str]
    events: dict[str, Any] | None


@dataclass
class FakeInsider:
    profile: dict[str, Any] | None
    reads: list[Read] = field(default_factory=list)

    async def read_profile(
        self,
        identifiers: dict[str, Any],
        attributes: Sequence[str] = ("*",),
        events: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        self.reads.append(Read(identifiers, list(attributes), events))
        return self.profile


def _check(fake: FakeInsider) -> HeldEventCheck:
    return HeldEventCheck(cast(InsiderClient, fake))


PERSON = Identifiers(uuid="c-1", email="jane@example.com")


def _view(event_id: str, timestamp: str = "2026-11-26T18:00:00Z") -> Sought:
    return Sought(
        name="product_detail_page_view",
        timestamp=timestamp,
        event_id=event_id,
        product_id="S1",
    )


def _purchase(product_id: str, timestamp: str = "2026-11-26T18:00:00Z") -> Sought:
    return Sought(name="purchase", timestamp=timestamp, group_id="O1", product_id=product_id)


def _stored_purchase(product_id: str) -> dict[str, Any]:
    return {
        "event_group_id": "O1",
        "product_id": product_id,
        "event_id": None,
        "created_date": "2026-11-26T18:00:00Z",
    }


async def test_event_ids_tell_apart_two_views_of_one_product_in_one_second() -> None:
    # Given a profile holding one of two views of the same product in the same second
    fake = FakeInsider(
        {
            "events": {
                "product_detail_page_view": [
                    {
                        "event_id": "e1",
                        "product_id": "S1",
                        "created_date": "2026-11-26T18:00:00Z",
                    }
                ]
            }
        }
    )
    # When both are sought
    held = await _check(fake).held(PERSON, [_view("e1"), _view("e2")])
    # Then only the one whose id is in the profile is held
    assert held == [True, False]


async def test_order_events_are_matched_by_count() -> None:
    # Given a profile with one purchase of S1 in order O1 (and one of S2)
    fake = FakeInsider({"events": {"purchase": [_stored_purchase("S1"), _stored_purchase("S2")]}})
    # When two purchases of S1 in O1 and one of S3 are sought
    held = await _check(fake).held(PERSON, [_purchase("S1"), _purchase("S1"), _purchase("S3")])
    # Then one S1 is confirmed (one match for one event), the second and S3 are not
    assert held == [True, False, False]


async def test_events_delivered_before_use_up_matches() -> None:
    # Given a profile with two purchases of S1 in O1, one of them known delivered earlier
    fake = FakeInsider({"events": {"purchase": [_stored_purchase("S1"), _stored_purchase("S1")]}})
    check = _check(fake)
    # When two new purchases of S1 are sought, with the earlier one as delivered before
    held = await check.held(
        PERSON, [_purchase("S1"), _purchase("S1")], delivered_before=[_purchase("S1")]
    )
    # Then only one of the two is confirmed
    assert held == [True, False]
    # And without that knowledge both would have been
    assert await check.held(PERSON, [_purchase("S1"), _purchase("S1")]) == [True, True]


async def test_a_delivered_event_with_its_own_id_does_not_use_up_count_matches() -> None:
    # Given a profile with a purchase of S1, and an id-carrying event delivered before
    fake = FakeInsider({"events": {"purchase": [_stored_purchase("S1")]}})
    earlier = Sought(
        name="purchase",
        timestamp="2026-11-26T17:00:00Z",
        event_id="x-1",
        group_id="O1",
        product_id="S1",
    )
    # When a purchase of S1 is sought
    held = await _check(fake).held(PERSON, [_purchase("S1")], delivered_before=[earlier])
    # Then the stored purchase still confirms it
    assert held == [True]


async def test_no_profile_means_nothing_is_held() -> None:
    # Given a person Insider does not know
    fake = FakeInsider(None)
    # When events are sought
    held = await _check(fake).held(PERSON, [_view("e1"), _purchase("S1")])
    # Then none is held
    assert held == [False, False]


async def test_nothing_sought_reads_nothing() -> None:
    # Given a check
    fake = FakeInsider({"events": {}})
    # When nothing is sought
    held = await _check(fake).held(PERSON, [])
    # Then no profile read is spent
    assert held == []
    assert fake.reads == []


async def test_the_read_asks_for_the_strongest_identifier_and_a_window_around_the_events() -> None:
    # Given events sought over two days, and one delivered before them
    fake = FakeInsider({"events": {}})
    sought = [
        _view("e1", "2026-11-26T18:00:00Z"),
        _purchase("S1", "2026-11-27T09:30:00Z"),
        _view("e2", "2026-11-25T12:00:00Z"),
    ]
    earlier = _purchase("S0", "2026-11-20T08:00:00Z")
    # When the check runs
    await _check(fake).held(PERSON, sought, delivered_before=[earlier])
    # Then one read asked for the uuid (the strongest identifier) only
    assert len(fake.reads) == 1
    read = fake.reads[0]
    assert read.identifiers == {"uuid": "c-1"}
    # And for the sought event names with the params that recognise them
    assert read.events is not None
    assert read.events["wanted"] == [
        {"event_name": name, "params": MATCH_PARAMS}
        for name in ("product_detail_page_view", "purchase")
    ]
    # And for a window from the earliest to the latest timestamp, widened by the slack
    start = datetime(2026, 11, 20, 8, 0, tzinfo=UTC) - READ_SLACK
    end = datetime(2026, 11, 27, 9, 30, tzinfo=UTC) + READ_SLACK
    assert read.events["start_date"] == int(start.timestamp())
    assert read.events["end_date"] == int(end.timestamp())


async def test_a_person_known_by_email_only_is_read_by_email() -> None:
    # Given a person without uuid
    fake = FakeInsider(None)
    # When the check runs
    await _check(fake).held(Identifiers(email="jane@example.com"), [_view("e1")])
    # Then the read names the email
    assert fake.reads[0].identifiers == {"email": "jane@example.com"}


def test_sought_of_extracts_event_id_group_and_product() -> None:
    # Given a storefront event with its own id, and an order event with a numeric group
    view = Event(
        event_name="product_detail_page_view",
        timestamp="2026-11-26T18:00:00Z",
        event_params={"product_id": "S1", "custom": {"event_id": "e-1", "channel": "web"}},
    )
    purchase = Event(
        event_name="purchase",
        timestamp="2026-11-26T18:00:00Z",
        event_params={"product_id": "S2", "event_group_id": 1001, "custom": {"order_id": "o"}},
    )
    # When each is reduced to what recognises it
    sought_view = Sought.of(view)
    sought_purchase = Sought.of(purchase)
    # Then the id, group and product are taken (as text)
    assert sought_view == Sought(
        name="product_detail_page_view",
        timestamp="2026-11-26T18:00:00Z",
        event_id="e-1",
        group_id=None,
        product_id="S1",
    )
    assert sought_purchase == Sought(
        name="purchase",
        timestamp="2026-11-26T18:00:00Z",
        event_id=None,
        group_id="1001",
        product_id="S2",
    )
    assert sought_purchase.count_key() == ("purchase", "1001", "S2")


# -- fingerprint matching: accounts whose profile reads return default params only --------


def _read_view(product_id: str | None, created_date: object) -> dict[str, Any]:
    """An event as a read that leaves custom params out returns it (no event_id)."""
    event: dict[str, Any] = {"created_date": created_date}
    if product_id is not None:
        event["product_id"] = product_id
    return event


def _views_profile(*events: dict[str, Any]) -> FakeInsider:
    return FakeInsider({"events": {"product_detail_page_view": list(events)}})


async def test_fingerprints_count_two_identical_views_both_held() -> None:
    # Given a profile holding two views of S1 in the same second (their ids not returned)
    fake = _views_profile(
        _read_view("S1", "2026-11-26T18:00:00Z"), _read_view("S1", "2026-11-26T18:00:00Z")
    )
    # When both are sought by fingerprint
    held = await _check(fake).held(PERSON, [_view("e1"), _view("e2")], matching="fingerprint")
    # Then both are held
    assert held == [True, True]


async def test_fingerprints_count_one_of_two_identical_views_missing() -> None:
    # Given a profile holding one of two identical views
    fake = _views_profile(_read_view("S1", "2026-11-26T18:00:00Z"))
    # When both are sought by fingerprint
    held = await _check(fake).held(PERSON, [_view("e1"), _view("e2")], matching="fingerprint")
    # Then one is held and one is to be sent again (k=2 sought, j=1 held: 1 resent)
    assert held == [True, False]


async def test_fingerprints_tell_apart_products() -> None:
    # Given a profile holding a view of S2 in the second a view of S1 is sought for
    fake = _views_profile(_read_view("S2", "2026-11-26T18:00:00Z"))
    s2 = Sought(
        name="product_detail_page_view",
        timestamp="2026-11-26T18:00:00Z",
        event_id="e2",
        product_id="S2",
    )
    # When views of S1 and S2 are sought
    held = await _check(fake).held(PERSON, [_view("e1"), s2], matching="fingerprint")
    # Then S2's is held, S1's missing
    assert held == [False, True]


@pytest.mark.parametrize(
    ("created_date", "held"),
    [
        ("2026-11-26T18:00:00Z", True),
        ("2026-11-26T18:00:00.999Z", True),  # fractional seconds cut off, not rounded up
        ("2026-11-26T21:00:00+03:00", True),  # an offset: the same instant
        ("2026-11-26T18:00:00", True),  # no zone: UTC
        (1795716000, True),  # unix seconds
        ("2026-11-26T18:00:01Z", False),  # the next second
        ("2026-11-26T17:59:59.999Z", False),
        ("2026-11-26T18:00:00+01:00", False),  # an hour earlier
        ("not a date", False),
        (None, False),
    ],
)
async def test_fingerprints_compare_timestamps_to_the_second(
    created_date: object, held: bool
) -> None:
    # Given a profile holding a view of S1 read back with this created_date
    fake = _views_profile(_read_view("S1", created_date))
    # When a view of S1 sent at 18:00:00Z is sought by fingerprint
    answer = await _check(fake).held(PERSON, [_view("e1")], matching="fingerprint")
    # Then it is held exactly when the read's second is the one sent
    assert answer == [held]


async def test_event_id_matching_finds_nothing_where_reads_leave_custom_params_out() -> None:
    # Given the view is stored, but the read returns default params only
    fake = _views_profile(_read_view("S1", "2026-11-26T18:00:00Z"))
    # When it is sought by event_id (an account misjudged) and by fingerprint
    by_id = await _check(fake).held(PERSON, [_view("e1")], matching="event_id")
    by_fingerprint = await _check(fake).held(PERSON, [_view("e1")], matching="fingerprint")
    # Then only the fingerprint recognises it (event_id would send it again)
    assert (by_id, by_fingerprint) == ([False], [True])


async def test_fingerprints_of_events_delivered_before_use_up_matches() -> None:
    # Given a profile holding one view of S1, known delivered in an earlier round
    fake = _views_profile(_read_view("S1", "2026-11-26T18:00:00Z"))
    # When an identical view is sought
    held = await _check(fake).held(
        PERSON, [_view("e2")], delivered_before=[_view("e1")], matching="fingerprint"
    )
    # Then the stored one is the earlier event's: the sought one is missing
    assert held == [False]


async def test_a_sign_up_is_recognised_by_name_and_second_and_orders_still_by_count() -> None:
    # Given a profile holding a sign-up (no product) and a purchase, read without custom params
    fake = FakeInsider(
        {
            "events": {
                "sign_up_confirmation": [_read_view(None, "2026-11-26T18:00:00Z")],
                "purchase": [_stored_purchase("S1")],
            }
        }
    )
    sign_up = Sought(name="sign_up_confirmation", timestamp="2026-11-26T18:00:00Z", event_id="m1")
    late_sign_up = Sought(
        name="sign_up_confirmation", timestamp="2026-11-26T18:00:05Z", event_id="m2"
    )
    # When they are sought by fingerprint, with two purchases
    held = await _check(fake).held(
        PERSON, [sign_up, late_sign_up, _purchase("S1"), _purchase("S1")], matching="fingerprint"
    )
    # Then the sign-up of that second is held, the other not; one purchase is confirmed
    assert held == [True, False, True, False]
