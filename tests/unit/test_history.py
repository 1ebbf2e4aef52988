"""Which orders are historical (older than the live window), and what they send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ct_insider.insider.models import Attributes, Event, Identifiers, User
from ct_insider.sync.history import as_history, is_historical

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=72)


def user(*ages: timedelta, email: str | None = None) -> User:
    return User(
        identifiers=Identifiers(uuid="c-1"),
        attributes=Attributes(email=email) if email else None,
        events=[
            Event(
                event_name="purchase",
                timestamp=(NOW - age).isoformat().replace("+00:00", "Z"),
                event_params={"event_group_id": "o-1"},
            )
            for age in ages
        ],
    )


def test_an_order_is_historical_only_when_every_event_is_older_than_the_window() -> None:
    # A years-old purchase alone is historical
    assert is_historical(user(timedelta(days=700)), NOW, WINDOW)
    # Just inside the window it is live
    assert not is_historical(user(timedelta(hours=71, minutes=59)), NOW, WINDOW)
    # A years-old purchase with a refund today is live: the refund is news
    assert not is_historical(user(timedelta(days=700), timedelta(minutes=5)), NOW, WINDOW)
    # An upsert without events is not an order's history
    assert not is_historical(user(), NOW, WINDOW)


def test_history_as_events_keeps_them_and_as_attributes_keeps_the_profile_only() -> None:
    guest = user(timedelta(days=700), email="guest@example.com")
    assert as_history(guest, "events") == guest
    profile = as_history(guest, "attributes")
    assert profile is not None
    assert (profile.events, profile.attributes, profile.identifiers) == (
        None,
        guest.attributes,
        guest.identifiers,
    )
    # A registered customer's order carries no attributes of its own: nothing to send
    assert as_history(user(timedelta(days=700)), "attributes") is None
