"""What the bridge does with carts when cart events are on: the subscription setup asks
for, the notifications it routes, and the storefront events it leaves to the carts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.carts import StorefrontCarts, cart_notification_signal
from ct_insider.commercetools.notifications import consumes
from ct_insider.config import CartSettings, SubscriptionSettings
from ct_insider.journeys.envelopes import Notification
from ct_insider.journeys.storefront import StorefrontEvent
from ct_insider.setup.subscription import subscription_draft

PUBSUB = SubscriptionSettings.model_validate(
    {"destination": "GoogleCloudPubSub", "gcp_project_id": "p", "gcp_topic": "t"}
)


def test_abandon_setup_subscribes_to_cart_changes_only_with_cart_events_on() -> None:
    # Given the subscription without and with cart events
    off, on = subscription_draft(PUBSUB), subscription_draft(PUBSUB, carts=True)
    # Then only the second asks for cart changes and cart state messages
    assert "cart" not in [c["resourceTypeId"] for c in off["changes"]]
    assert "cart" in [c["resourceTypeId"] for c in on["changes"]]
    [cart_messages] = [m for m in on["messages"] if m["resourceTypeId"] == "cart"]
    assert cart_messages["types"] == ["CartFrozen", "CartUnfrozen"]
    # And the bridge routes exactly what each asks for
    for kind in ("ResourceCreated", "ResourceUpdated", "ResourceDeleted"):
        assert consumes("cart", kind, kind, carts=True)
        assert not consumes("cart", kind, kind)
    assert consumes("cart", "Message", "CartFrozen", carts=True)
    assert not consumes("cart", "Message", "CartFrozen")
    assert not consumes("cart", "Message", "CartCreated", carts=True)


def _notification(kind: str) -> Notification:
    return Notification(
        id=f"cart-1@3:{kind}",
        envelope="platform",
        notification_type=kind,
        type=kind,
        resource_type="cart",
        resource_id="cart-1",
        resource_version=3,
        occurred_at=datetime.now(UTC),
    )


def test_abandon_a_cart_change_may_start_its_workflow_a_deletion_only_ends_it() -> None:
    changed = cart_notification_signal(_notification("ResourceUpdated"))
    assert (changed.cart_id, changed.nudge.what, changed.may_start) == ("cart-1", "changed", True)
    deleted = cart_notification_signal(_notification("ResourceDeleted"))
    assert (deleted.nudge.what, deleted.may_start) == ("deleted", False)


def _event(kind: str, **fields: object) -> StorefrontEvent:
    return StorefrontEvent.model_validate(
        {
            "event_id": f"e-{kind}",
            "type": kind,
            "occurred_at": "2026-12-01T10:00:00Z",
            "identity": {"anonymous_id": "v"},
            **fields,
        }
    )


@pytest.mark.parametrize(
    ("event", "taken", "nudge"),
    [
        (_event("add_to_cart", sku="S", cart_id="c-1"), True, None),
        (_event("remove_from_cart", sku="S", cart_id="c-1"), True, None),
        (_event("add_to_cart", sku="S"), False, None),  # no cart named: sent as it is
        (_event("checkout_started", cart_id="c-1", currency="EUR"), False, "checkout"),
        (_event("cart_view", cart_id="c-1", currency="EUR"), False, None),
    ],
)
def test_abandon_storefront_cart_events_are_left_to_the_cart_that_names_them(
    event: StorefrontEvent, taken: bool, nudge: str | None
) -> None:
    # Given cart events on, When a storefront event arrives
    carts = StorefrontCarts()
    # Then the cart's own change gives add/remove events; a checkout also holds reminders
    assert carts.takes(event) is taken
    assert carts.left_to_cart == int(taken)
    assert [s.nudge.what for s in carts.signals] == ([nudge] if nudge else [])
    assert all(not s.may_start for s in carts.signals)


def test_abandon_cart_settings_refuse_bad_delays_by_name() -> None:
    with pytest.raises(ValueError, match="not a delay"):
        CartSettings(reminder_delays="an hour")
    assert CartSettings().reminder_delays == "60m"
