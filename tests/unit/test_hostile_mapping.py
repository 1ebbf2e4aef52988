"""Every mapper, fed hostile commercetools resources and storefront events of the documented
shape, either gives records that pass the Insider emulator's own validation (the functions
emulators/insider/ applies to every request) or a clear rejection with a reason; never an
unexpected exception (a sync would retry the record forever, a workflow would stall on it).

Profiles (tests/conftest.py): `fast` in `make test` (derandomized: the same examples every
run, so a failure is a real bug, never an unlucky draw), `reliability` with many more random
examples (`make reliability-hostile`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st
from pydantic import ValidationError

from ct_insider.carts.events import SentCart, observe, reminder_signal
from ct_insider.carts.lines import MAX_CART_LINES, CartRecord, snapshot
from ct_insider.commercetools.models import Customer, Order, ProductProjection
from ct_insider.insider.models import Event, Identifiers, User
from ct_insider.journeys.storefront import INTAKE, StorefrontEvent, map_storefront_event
from ct_insider.mapping import normalize
from ct_insider.mapping.catalog import CatalogRules, Market, map_product
from ct_insider.mapping.config import MappingConfig, OrderEventRules
from ct_insider.mapping.customers import map_customer
from ct_insider.mapping.orders import OrderContext, map_order
from ct_insider.replenishment.lines import PeriodLookups, timer_changes
from ct_insider.replenishment.model import ArmTimer
from ct_insider.replenishment.reminders import reminder_event
from ct_insider.replenishment.state import CustomerTimers
from emulators.insider.validation import validate_catalog_item, validate_user
from tests import hostile_strategies as hs

# Large documents (a 300-line order) are slow to draw: not a reason to skip them.
SLOW_DRAWS = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])

CONFIGS = st.builds(
    lambda sources, custom_lines, purchase_time, uuid_source: MappingConfig(
        uuid_source=uuid_source,
        orders=OrderEventRules(
            refund_sources=sources,
            include_custom_line_items=custom_lines,
            purchase_time=purchase_time,
        ),
        custom_field_attributes={"loyalty": "loyalty_tier"},
        store_languages={"de-store": "de_DE"},
    ),
    st.sampled_from([["payments", "returns"], ["payments"], ["returns"], []]),
    st.booleans(),
    st.sampled_from(["createdAt", "completedAt"]),
    st.sampled_from(["id", "key", "customerNumber", "externalId"]),
)


def insider_errors(user: User) -> dict[str, list[str]]:
    """What the Insider emulator would answer for this user (empty: accepted)."""
    return validate_user(0, user.to_json_dict())


def events_errors(events: list[Event]) -> dict[str, list[str]]:
    user = User(identifiers=Identifiers(uuid="someone"), events=events)
    return insider_errors(user)


def is_reason(text: str | None) -> bool:
    return isinstance(text, str) and len(text.strip()) > 5


@SLOW_DRAWS
@given(document=hs.customer(), config=CONFIGS)
def test_any_customer_maps_to_an_accepted_user_or_a_reason(
    document: dict[str, Any], config: MappingConfig
) -> None:
    # Given a customer of the documented shape, however odd its values
    customer = Customer.model_validate(document)
    # When it is mapped
    mapped = map_customer(customer, config)
    # Then it is a user Insider accepts, or a rejection that says why
    label("customer: rejected" if mapped.user is None else "customer: sent")
    if mapped.user is None:
        assert is_reason(mapped.rejection)
    else:
        assert mapped.rejection is None
        assert insider_errors(mapped.user) == {}
    assert all(is_reason(w) for w in mapped.warnings)


@SLOW_DRAWS
@given(document=hs.order(), config=CONFIGS, uuids=st.dictionaries(hs.TEXT, hs.TEXT, max_size=2))
def test_any_order_maps_to_accepted_events_or_a_reason(
    document: dict[str, Any], config: MappingConfig, uuids: dict[str, str]
) -> None:
    # Given an order of the documented shape: missing prices, zero or negative quantities,
    # amounts up to commercetools' Long, many lines, any text
    order = Order.model_validate(document)
    context = OrderContext(customer_uuids=uuids, registered_emails={"jane@example.com"})
    # When it is mapped
    mapped = map_order(order, config, context)
    # Then its upsert is one Insider accepts, or the order is rejected with a reason
    user = mapped.user()
    label(f"order: {mapped.rejection or 'sent'}"[:60])
    if mapped.rejection is not None:
        assert is_reason(mapped.rejection)
        assert user is None
    else:
        assert user is not None
        assert insider_errors(user) == {}
    assert all(is_reason(w) for w in mapped.warnings)


MARKETS = st.lists(
    st.sampled_from(
        [
            Market(locale="en_US", languages=["en-US", "en"], currency="USD", country="US"),
            Market(locale="de_DE", languages=["de-DE", "de", "en"], currency="EUR", country="DE"),
            Market(locale="en_GB:uk-store", languages=["en-GB"], currency="GBP", channel="ch"),
            Market(locale="ja_JP", languages=["ja"], currency="JPY"),
        ]
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda m: m.locale,
)


@SLOW_DRAWS
@given(
    document=hs.product(),
    markets=MARKETS,
    taxonomy=st.lists(hs.LOCALIZED, max_size=3),
    at=hs.MOMENTS,
)
def test_any_product_maps_to_accepted_items_or_reasons(
    document: dict[str, Any], markets: list[Market], taxonomy: list[dict[str, str]], at: datetime
) -> None:
    # Given a product projection of the documented shape, in a few markets
    product = ProductProjection.model_validate(document)
    rules = CatalogRules(
        markets=markets,
        url_template="https://shop.test/{language}/p/{slug}",
        product_attributes={"material": "material"},
    )
    # When it is mapped
    items = map_product(product, rules, taxonomy=taxonomy, inventory={}, at=at)
    # Then every variant in every market is an item the Catalog API accepts, or says why not
    assert len(items) == len(product.all_variants) * len(markets)
    locales = {market.locale for market in markets}
    for item in items:
        label(f"catalog item: {item.rejection or 'sent'}"[:40])
        if item.item is None:
            assert is_reason(item.rejection)
        else:
            assert validate_catalog_item(item.item, locales, partial=False) == []


@SLOW_DRAWS
@given(document=hs.cart(), config=CONFIGS, reminder=st.integers(1, 3), due=hs.MOMENTS)
def test_any_cart_gives_accepted_cart_events(
    document: dict[str, Any], config: MappingConfig, reminder: int, due: datetime
) -> None:
    # Given a cart of the documented shape (hundreds of lines, odd quantities and prices)
    cart = CartRecord.model_validate(document)
    # When its snapshot is taken and compared with an empty cart, and a reminder is due
    snap = snapshot(cart, config)
    observation = observe(SentCart(), snap)
    # Then the snapshot stays within its bounds
    assert len(snap.lines) <= MAX_CART_LINES
    assert {line.sku for line in snap.lines} <= {item.variant.sku for item in cart.line_items}
    assert snap.skipped_lines >= len(cart.custom_line_items)
    # And every event it gives is one Insider accepts (none when it names nobody)
    events = [s.cart_event for s in observation.signals if s.cart_event is not None]
    label(f"cart: {len(snap.lines)} lines, {snap.skipped_lines} skipped, {len(events)} events")
    if snap.routing_key() is None:
        assert observation.no_identifier
        assert not events
    if snap.lines:
        signal = reminder_signal(
            snap, armed_version=snap.version, number=reminder, due_at=due, cart_url=None
        )
        assert signal.cart_event is not None
        events.append(signal.cart_event)
    if events:
        assert events_errors(events) == {}


@SLOW_DRAWS
@given(document=hs.storefront_event(), shop_currency=st.none() | hs.CURRENCIES)
def test_any_storefront_event_maps_to_accepted_events_or_is_refused(
    document: dict[str, Any], shop_currency: str | None
) -> None:
    # Given a storefront event as the /events schema documents it
    try:
        event = StorefrontEvent.model_validate(document, context=INTAKE)
    except ValidationError as exc:
        refusal = exc.errors()
        # Then one the schema refuses is refused with where and why (the bridge's 422)
        label("storefront: refused")
        assert all(error["msg"] and error["loc"] is not None for error in refusal)
        return
    label("storefront: mapped")
    # When it is mapped (as a journey shard does: ct_insider/journeys/plan.py)
    events = map_storefront_event(
        event,
        currency=shop_currency,
        language=normalize.insider_language(event.locale, event.country),
        custom={"channel": event.channel or "web"},
    )
    # Then every event is one Insider accepts
    assert events
    assert events_errors(events) == {}


@SLOW_DRAWS
@given(
    document=hs.order(),
    config=CONFIGS,
    product_days=st.dictionaries(
        st.sampled_from(["p-1", "p-2"]),
        st.floats(min_value=1e-9, max_value=1e300, allow_nan=False, allow_infinity=False),
        max_size=2,
    ),
    day_seconds=st.sampled_from([86_400.0, 1.0]),
)
def test_any_order_gives_timers_that_arm_and_remind(
    document: dict[str, Any],
    config: MappingConfig,
    product_days: dict[str, float],
    day_seconds: float,
) -> None:
    # Given an order whose lines carry any replenishment period (attribute or product)
    order = Order.model_validate(document)
    mapped = map_order(order, config, OrderContext())
    lookups = PeriodLookups(
        attribute="replenish-days", product_days=product_days, day_seconds=day_seconds
    )
    # When its timer changes are computed and applied to the customer's timers
    changes = timer_changes(order, mapped, lookups, config.orders.purchase_time)
    timers: dict[str, CustomerTimers] = {}
    for batch in changes.values():
        for change in batch:
            held = timers.setdefault(change.customer_key, CustomerTimers(customer_key="k"))
            held.apply(change, day_seconds, max_skus=1_000)
    # Then every armed timer has a due date, and its reminder is an event Insider accepts
    reminders = [
        reminder_event(timer, "replenishment_due")
        for held in timers.values()
        for timer in held.skus.values()
    ]
    label(f"timers: {len(reminders)} armed")
    if reminders:
        assert events_errors(reminders) == {}
    for batch in changes.values():
        for change in batch:
            if isinstance(change, ArmTimer):
                assert change.period_days > 0
                assert "@" not in change.customer_key  # never a raw email in a workflow id
