"""What a batch of journey signals becomes in Insider: users in waves, identity operations,
deletions and refusals, all decided without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ct_insider.commercetools.models import Customer, Order
from ct_insider.journeys.plan import (
    Deletion,
    DeliveryContext,
    DeliveryPlan,
    EmailChange,
    PlannedUser,
    plan_delivery,
)
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal, Market
from ct_insider.journeys.storefront import EventIdentity, StorefrontEvent
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.orders import OrderContext, map_order
from ct_insider.sync.ledger import LedgerEntry
from ct_insider.sync.orders import PreparedOrder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
CONFIG = MappingConfig()


def _raw_order() -> dict[str, Any]:
    # order-1 of customer cust-1 (Ann.Lee@Example.com), two lines: purchase:li-1 and li-2
    raw = json.loads((FIXTURES / "order_mapping" / "currency_three_digits.input.json").read_text())
    order: dict[str, Any] = raw["order"]
    return order


def _raw_customer() -> dict[str, Any]:
    # customer c-1, jane.doe@example.com
    raw = json.loads((FIXTURES / "customer_mapping" / "full.input.json").read_text())
    customer: dict[str, Any] = raw["customer"]
    return customer


def _prepared(delivered: frozenset[str] = frozenset()) -> PreparedOrder:
    mapped = map_order(Order.model_validate(_raw_order()), CONFIG, OrderContext())
    assert mapped.rejection is None
    return PreparedOrder(mapped, LedgerEntry(delivered=delivered, version=1))


def _view(
    event_id: str,
    *,
    customer_id: str | None = None,
    anonymous_id: str | None = None,
    email: str | None = None,
    occurred_at: datetime = NOW,
    sku: str = "SKU-1",
) -> JourneySignal:
    event = StorefrontEvent(
        event_id=event_id,
        type="product_view",
        occurred_at=occurred_at,
        identity=EventIdentity(customer_id=customer_id, anonymous_id=anonymous_id, email=email),
        sku=sku,
    )
    return JourneySignal(
        dedupe_key=event_id,
        kind="storefront",
        type="product_view",
        occurred_at=occurred_at,
        identity=JourneyIdentity(customer_id=customer_id, anonymous_id=anonymous_id, email=email),
        market=Market(currency="EUR", language="de_DE"),
        storefront=event,
    )


def _order_signal(
    order_id: str = "order-1", *, dedupe_key: str = "msg-order", customer_id: str = "cust-1"
) -> JourneySignal:
    return JourneySignal(
        dedupe_key=dedupe_key,
        kind="order",
        type="OrderCreated",
        occurred_at=NOW,
        identity=JourneyIdentity(customer_id=customer_id),
        resource_id=order_id,
        resource_version=1,
    )


def _customer_signal(
    message_type: str,
    *,
    customer_id: str = "c-1",
    dedupe_key: str = "msg-customer",
    previous_email: str | None = None,
    occurred_at: datetime = NOW,
) -> JourneySignal:
    return JourneySignal(
        dedupe_key=dedupe_key,
        kind="customer",
        type=message_type,
        occurred_at=occurred_at,
        identity=JourneyIdentity(customer_id=customer_id),
        resource_id=customer_id,
        resource_version=2,
        previous_email=previous_email,
    )


def _event_ids(user: PlannedUser) -> list[str]:
    return [str(planned.event.event_params["custom"]["event_id"]) for planned in user.events]


def _only_wave(plan: DeliveryPlan) -> list[PlannedUser]:
    assert len(plan.waves) == 1
    return plan.waves[0]


# --- storefront events --------------------------------------------------------------------


def test_storefront_events_of_many_people_become_one_user_each_in_one_wave() -> None:
    # Given interleaved views of a customer, a visitor and an email-only shopper
    signals = [
        _view("e-0", customer_id="c-1", occurred_at=NOW),
        _view("e-1", anonymous_id="v-1", occurred_at=NOW + timedelta(seconds=1)),
        _view("e-2", customer_id="c-1", occurred_at=NOW + timedelta(seconds=2), sku="SKU-2"),
        _view("e-3", email="Shopper@Example.com", occurred_at=NOW + timedelta(seconds=3)),
        _view("e-4", anonymous_id="v-1", occurred_at=NOW + timedelta(seconds=4)),
    ]
    # When the batch is planned
    plan = plan_delivery(signals, DeliveryContext(config=CONFIG))
    # Then there is one wave with one user per person, each with its events in batch order
    users = _only_wave(plan)
    assert [u.identity for u in users] == [
        "customer-c-1",
        "anonymous-v-1",
        signals[3].routing(),
    ]
    customer, visitor, shopper = users
    assert _event_ids(customer) == ["e-0", "e-2"]
    assert [p.event.event_params["product_id"] for p in customer.events] == ["SKU-1", "SKU-2"]
    assert [p.signal for p in customer.events] == [0, 2]
    assert _event_ids(visitor) == ["e-1", "e-4"]
    assert _event_ids(shopper) == ["e-3"]
    # And each person is identified by what their events said
    assert customer.identifiers.uuid == "c-1"
    assert visitor.identifiers.custom == {CONFIG.orders.anonymous_identifier: "v-1"}
    assert shopper.identifiers.email == "shopper@example.com"
    # And the market came from the signals
    assert customer.events[0].event.event_params["currency"] == "EUR"
    assert customer.events[0].event.event_params["locale"] == "de_DE"
    assert plan.refused == []
    assert plan.nothing_to_send == []
    assert plan.deletions == []


def test_storefront_event_without_a_usable_identifier_is_refused_with_a_reason() -> None:
    # Given uuids taken from the customer key, and a view of a customer whose key is unknown
    config = MappingConfig(uuid_source="key")
    signals = [
        _view("e-lost", customer_id="c-9"),
        _view("e-ok", customer_id="c-8"),
    ]
    context = DeliveryContext(config=config, customer_uuids={"c-8": "key-8"})
    # When the batch is planned
    plan = plan_delivery(signals, context)
    # Then the unidentifiable view is refused with a reason, the other is planned
    assert len(plan.refused) == 1
    refusal = plan.refused[0]
    assert (refusal.signal, refusal.entity, refusal.record_id) == (0, "storefront-event", "e-lost")
    assert refusal.reasons
    assert "identifier" in refusal.reasons[0]
    users = _only_wave(plan)
    assert [u.identifiers.uuid for u in users] == ["key-8"]


def test_a_signal_the_mapping_cannot_take_is_refused_without_stopping_the_rest() -> None:
    # Given a storefront signal that lost its storefront event, followed by a sound one
    broken = _view("e-broken", customer_id="c-1")
    broken.storefront = None
    signals = [broken, _view("e-ok", customer_id="c-2")]
    # When the batch is planned
    plan = plan_delivery(signals, DeliveryContext(config=CONFIG))
    # Then the broken one is refused, the other planned
    assert [(r.signal, r.entity, r.record_id) for r in plan.refused] == [
        (0, "storefront-signal", "e-broken")
    ]
    assert [u.identity for u in _only_wave(plan)] == ["customer-c-2"]


# --- orders -------------------------------------------------------------------------------


def test_an_order_purchase_merges_into_the_user_of_the_same_person() -> None:
    # Given a customer's product view and then their order
    signals = [_view("e-0", customer_id="cust-1"), _order_signal()]
    context = DeliveryContext(config=CONFIG, orders={"order-1": _prepared()})
    # When the batch is planned
    plan = plan_delivery(signals, context)
    # Then one user carries the view and both purchase events, in that order
    [user] = _only_wave(plan)
    assert user.identity == "customer-cust-1"
    assert [p.event.event_name for p in user.events] == [
        "product_detail_page_view",
        "purchase",
        "purchase",
    ]
    assert [p.ledger_key for p in user.events] == [None, "purchase:li-1", "purchase:li-2"]
    assert [p.order_id for p in user.events] == [None, "order-1", "order-1"]
    assert user.signals == [0, 1]
    # And the identifiers of both were merged
    assert user.identifiers.uuid == "cust-1"
    assert user.identifiers.email == "ann.lee@example.com"
    assert user.delivered_before == []
    assert user.user().events is not None
    assert len(user.user().events or []) == 3


def test_ledger_delivered_order_events_are_left_out_and_listed_as_delivered_before() -> None:
    # Given an order whose first line's purchase Insider already acknowledged
    context = DeliveryContext(
        config=CONFIG, orders={"order-1": _prepared(frozenset({"purchase:li-1"}))}
    )
    # When its signal is planned
    plan = plan_delivery([_order_signal()], context)
    # Then only the second line's purchase is sent; the first is named as delivered before
    [user] = _only_wave(plan)
    assert [p.ledger_key for p in user.events] == ["purchase:li-2"]
    assert [e.event_params["product_id"] for e in user.delivered_before] == ["SKU-OUD"]
    assert [p.event.event_params["product_id"] for p in user.events] == ["SKU-BOX"]


def test_an_order_whose_events_were_all_delivered_has_nothing_to_send() -> None:
    # Given an order whose every event is in the ledger
    delivered = frozenset({"purchase:li-1", "purchase:li-2"})
    context = DeliveryContext(config=CONFIG, orders={"order-1": _prepared(delivered)})
    # When its signal is planned
    plan = plan_delivery([_order_signal()], context)
    # Then nothing is sent for it
    assert plan.nothing_to_send == [0]
    assert plan.waves == []


def test_a_second_signal_for_the_same_order_has_nothing_to_send() -> None:
    # Given two messages about one order in a batch
    signals = [_order_signal(dedupe_key="msg-1"), _order_signal(dedupe_key="msg-2")]
    context = DeliveryContext(config=CONFIG, orders={"order-1": _prepared()})
    # When the batch is planned
    plan = plan_delivery(signals, context)
    # Then the order's events go out once, with the first signal
    [user] = _only_wave(plan)
    assert len(user.events) == 2
    assert {p.signal for p in user.events} == {0}
    assert plan.nothing_to_send == [1]


def test_an_order_missing_from_the_context_has_nothing_to_send() -> None:
    # Given an order signal whose order could not be read (deleted since)
    plan = plan_delivery([_order_signal("order-gone")], DeliveryContext(config=CONFIG))
    # Then nothing is sent and nothing refused
    assert plan.nothing_to_send == [0]
    assert plan.refused == []


def test_an_order_refused_by_its_mapping_is_a_refusal_of_the_order() -> None:
    # Given an order the mapping refused
    context = DeliveryContext(
        config=CONFIG,
        orders={"order-1": _prepared()},
        order_refusals={"order-1": ["no line item with a SKU"]},
    )
    # When its signal is planned
    plan = plan_delivery([_order_signal()], context)
    # Then it is refused as an order, with the mapping's reasons
    assert len(plan.refused) == 1
    refusal = plan.refused[0]
    assert (refusal.signal, refusal.entity, refusal.record_id) == (0, "order", "order-1")
    assert refusal.reasons == ["no line item with a SKU"]
    assert plan.waves == []


def test_conflicting_identifiers_of_one_person_go_to_a_second_wave() -> None:
    # Given a view signed with a new email, then an order placed with the old one
    signals = [
        _view("e-0", customer_id="cust-1", email="new@example.com"),
        _order_signal(),
    ]
    context = DeliveryContext(config=CONFIG, orders={"order-1": _prepared()})
    # When the batch is planned
    plan = plan_delivery(signals, context)
    # Then the order's user is sent in a later wave than the view's
    assert len(plan.waves) == 2
    [first], [second] = plan.waves
    assert first.identity == second.identity == "customer-cust-1"
    assert first.identifiers.email == "new@example.com"
    assert first.signals == [0]
    assert second.identifiers.email == "ann.lee@example.com"
    assert second.signals == [1]


# --- customers ----------------------------------------------------------------------------


def test_customer_deletion_is_planned_and_what_follows_it_is_dropped() -> None:
    # Given a customer's view, their deletion, their later view, and someone else's view
    signals = [
        _view("e-before", customer_id="c-1", occurred_at=NOW),
        _customer_signal("CustomerDeleted", occurred_at=NOW + timedelta(seconds=1)),
        _view("e-after", customer_id="c-1", occurred_at=NOW + timedelta(seconds=2)),
        _view("e-other", customer_id="c-2", occurred_at=NOW + timedelta(seconds=3)),
    ]
    # When the batch is planned
    plan = plan_delivery(signals, DeliveryContext(config=CONFIG))
    # Then the deletion is planned, the view before it is sent, the view after it is not
    assert plan.deletions == [
        Deletion(identity="customer-c-1", customer_id="c-1", uuid="c-1", signal=1)
    ]
    assert plan.nothing_to_send == [2]
    users = _only_wave(plan)
    assert [(u.identity, _event_ids(u)) for u in users] == [
        ("customer-c-1", ["e-before"]),
        ("customer-c-2", ["e-other"]),
    ]


def test_a_deletion_finds_the_uuid_the_message_names_when_it_is_not_the_id() -> None:
    # Given customers keyed in Insider by their key, and the deletion message of one, which
    # names the key among its user-provided identifiers (the record itself is gone)
    config = MappingConfig(uuid_source="key")
    signal = _customer_signal("CustomerDeleted").model_copy(
        update={"user_provided": {"key": "jane-key", "customerNumber": "C-7"}}
    )
    # When it is planned
    plan = plan_delivery([signal], DeliveryContext(config=config))
    # Then the Insider user with that uuid is the one to forget
    assert plan.deletions == [
        Deletion(identity="customer-c-1", customer_id="c-1", uuid="jane-key", signal=0)
    ]
    assert plan.refused == []


def test_a_deletion_finds_the_uuid_as_the_customer_sync_sent_it() -> None:
    # Given customers keyed by their key, which the sync sends without surrounding
    # whitespace, and deletions naming a padded key and a blank one
    config = MappingConfig(uuid_source="key")
    padded, blank = (
        _customer_signal("CustomerDeleted", customer_id=customer, dedupe_key=customer).model_copy(
            update={"user_provided": {"key": key}}
        )
        for customer, key in (("c-1", "  jane-key \n"), ("c-2", "   "))
    )
    # When they are planned
    plan = plan_delivery([padded, blank], DeliveryContext(config=config))
    # Then the padded key finds the user the sync created, and the blank one names no user
    assert plan.deletions == [
        Deletion(identity="customer-c-1", customer_id="c-1", uuid="jane-key", signal=0)
    ]
    [refusal] = plan.refused
    assert (refusal.record_id, refusal.signal) == ("c-2", 1)
    assert "names no key" in refusal.reasons[0]


def test_a_deletion_without_the_uuid_source_is_dead_lettered_not_silently_kept() -> None:
    # Given customers keyed by externalId, and a deletion that names only the key
    config = MappingConfig(uuid_source="externalId")
    signal = _customer_signal("CustomerDeleted").model_copy(
        update={"user_provided": {"key": "jane-key"}}
    )
    # When it is planned
    plan = plan_delivery([signal], DeliveryContext(config=config))
    # Then nothing is deleted, and the deletion is refused with the reason, for an operator
    assert plan.deletions == []
    [refusal] = plan.refused
    assert (refusal.entity, refusal.record_id, refusal.signal) == ("customer", "c-1", 0)
    assert "names no externalId" in refusal.reasons[0]
    # unless the rules keep deleted customers anyway
    kept = plan_delivery(
        [signal],
        DeliveryContext(config=config.model_copy(update={"customer_deletion": "keep"})),
    )
    assert kept.refused == []
    assert [d.customer_id for d in kept.deletions] == ["c-1"]


def test_customer_created_sends_a_sign_up_event_keyed_by_the_message() -> None:
    # Given a new customer
    customer = Customer.model_validate(_raw_customer())
    signal = _customer_signal("CustomerCreated", dedupe_key="msg-created-1")
    context = DeliveryContext(config=CONFIG, customers={"c-1": customer})
    # When the signal is planned
    plan = plan_delivery([signal], context)
    # Then the user carries the profile and one sign-up event with the message as its id
    [user] = _only_wave(plan)
    assert user.identifiers.uuid == "c-1"
    assert user.attributes is not None
    assert user.attributes.name == "Jane"
    assert len(user.events) == 1
    sign_up = user.events[0].event
    assert sign_up.event_name == "sign_up_confirmation"
    assert sign_up.event_params["custom"]["event_id"] == "msg-created-1"
    assert sign_up.timestamp == "2026-11-26T18:00:00Z"


def test_a_plain_customer_change_sends_the_profile_without_events() -> None:
    # Given a customer whose name changed
    customer = Customer.model_validate(_raw_customer())
    context = DeliveryContext(config=CONFIG, customers={"c-1": customer})
    # When the signal is planned
    plan = plan_delivery([_customer_signal("CustomerFirstNameSet")], context)
    # Then the profile goes out, with no event
    [user] = _only_wave(plan)
    assert user.attributes is not None
    assert user.attributes.email == "jane.doe@example.com"
    assert user.events == []
    assert user.user().events is None


def test_email_change_with_previous_email_plans_an_email_change() -> None:
    # Given a customer whose email changed from a known old one
    customer = Customer.model_validate(_raw_customer())
    signal = _customer_signal("CustomerEmailChanged", previous_email=" Old@Example.com ")
    context = DeliveryContext(config=CONFIG, customers={"c-1": customer})
    # When the signal is planned
    plan = plan_delivery([signal], context)
    # Then the identifier move is planned (normalized), and the profile is upserted
    assert plan.email_changes == [
        EmailChange(uuid="c-1", old="old@example.com", new="jane.doe@example.com", signal=0)
    ]
    [user] = _only_wave(plan)
    assert user.identifiers.email == "jane.doe@example.com"


def test_email_change_without_previous_email_leaves_old_unknown() -> None:
    # Given an email change message that did not say the old email
    customer = Customer.model_validate(_raw_customer())
    signal = _customer_signal("CustomerEmailChanged")
    context = DeliveryContext(config=CONFIG, customers={"c-1": customer})
    # When it is planned
    plan = plan_delivery([signal], context)
    # Then the change is planned with the old email to be read from the profile
    assert [(c.old, c.new) for c in plan.email_changes] == [(None, "jane.doe@example.com")]


def test_a_customer_missing_from_the_context_has_nothing_to_send() -> None:
    # Given a change of a customer who could not be read (deleted since)
    signal = _customer_signal("CustomerFirstNameSet", customer_id="c-gone")
    # When it is planned
    plan = plan_delivery([signal], DeliveryContext(config=CONFIG))
    # Then nothing is sent for it and nothing refused
    assert plan.nothing_to_send == [0]
    assert plan.waves == []
    assert plan.refused == []
