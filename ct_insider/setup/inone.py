"""What must exist in Insider InOne before the connector sends anything (pure).

Insider refuses a user carrying a custom attribute, custom event or custom event param its
account does not define, and offers no API to list or create them: an operator creates them
in InOne (Attributes & Events, Identity Resolution, the catalog's product attributes). This
lists them for a mapping configuration. The configurable names come from the configuration;
the fixed ones are what the mappers always write (a unit test maps every golden fixture and
checks each name it sees is listed here).
"""

from __future__ import annotations

from pydantic import BaseModel

from ct_insider.carts.events import (
    CART_ABANDONED_EVENT,
    CART_ABANDONED_PARAMS,
    CART_CLEARED_EVENT,
    CART_EVENT_PARAMS,
    ITEM_ADDED_EVENT,
    ITEM_REMOVED_EVENT,
)
from ct_insider.config import ReplenishmentSettings
from ct_insider.journeys.storefront import INSIDER_EVENT_NAMES
from ct_insider.mapping.config import MappingConfig
from ct_insider.replenishment.reminders import REMINDER_PARAMS

# Insider's default (system) events: they exist in every account. checkout_page_view is
# missing from Insider's default lists, so it is listed as custom: the safer reading.
DEFAULT_EVENTS = frozenset(
    {
        "purchase",
        "confirmation_page_view",
        "product_detail_page_view",
        "listing_page_view",
        "item_added_to_cart",
        "item_removed_from_cart",
        "cart_page_view",
        "cart_cleared",
        "sign_up_confirmation",
    }
)

# Custom attributes map_customer always sends (when the customer has a value).
CUSTOMER_ATTRIBUTES: dict[str, str] = {
    "ct_customer_number": "text: the customer number",
    "ct_is_email_verified": "boolean: the email was verified in commercetools",
    "ct_signup_date": "datetime: when the customer was created",
    "ct_customer_group": "text: the customer group key",
    "ct_stores": "array of text: the customer's store keys",
}

# Custom params of order events (purchase, refund, cancellation).
ORDER_PARAMS = (
    "order_id",
    "store",
    "country",
    "channel",
    "discount_codes",
    "shipping_cost",
    "custom_line_item",
)
REFUND_PARAMS = ("refund_source", "transaction_id", "return_item_id")
STOREFRONT_PARAMS = ("event_id", "channel", "country", "store")
# Storefront event type -> its own custom params besides STOREFRONT_PARAMS.
STOREFRONT_EXTRA_PARAMS: dict[str, tuple[str, ...]] = {"listing_view": ("product_ids",)}
SIGN_UP_PARAMS = ("event_id", "channel")


class InOneEvent(BaseModel):
    name: str
    custom: bool  # False: an Insider default event (its custom params still need defining)
    params: list[str]  # custom event params to define on it


class InOneRequirements(BaseModel):
    custom_attributes: dict[str, str]  # name -> type and meaning
    events: list[InOneEvent]
    # Identity Resolution: identifiers to enable (custom ones must be created first).
    identifiers: list[str]
    catalog_product_attributes: list[str]

    @property
    def custom_events(self) -> list[str]:
        return [event.name for event in self.events if event.custom]


def inone_requirements(
    config: MappingConfig, replenishment: ReplenishmentSettings | None = None
) -> InOneRequirements:
    attributes = dict(CUSTOMER_ATTRIBUTES)
    for source, target in config.custom_field_attributes.items():
        attributes[target] = f"as the customer custom field {source}"
    orders = config.orders
    params: dict[str, list[str]] = {}

    def add(name: str, names: tuple[str, ...]) -> None:
        known = params.setdefault(name, [])
        known.extend(n for n in names if n not in known)

    add(orders.purchase_event, ORDER_PARAMS)
    add(orders.refund_event, ORDER_PARAMS + REFUND_PARAMS)
    add(orders.cancellation_event, ORDER_PARAMS)
    add(config.sign_up_event, SIGN_UP_PARAMS)
    for storefront_type, name in INSIDER_EVENT_NAMES.items():
        add(name, STOREFRONT_PARAMS + STOREFRONT_EXTRA_PARAMS.get(storefront_type, ()))
    # Cart events (CART_EVENTS_ENABLED): listed whether or not they are on.
    for name in (ITEM_ADDED_EVENT, ITEM_REMOVED_EVENT, CART_CLEARED_EVENT):
        add(name, CART_EVENT_PARAMS)
    add(CART_ABANDONED_EVENT, CART_ABANDONED_PARAMS)
    if replenishment is not None and replenishment.enabled:
        add(replenishment.event_name, REMINDER_PARAMS)
    events = [
        InOneEvent(name=name, custom=name not in DEFAULT_EVENTS, params=sorted(names))
        for name, names in params.items()
    ]
    return InOneRequirements(
        custom_attributes=attributes,
        events=events,
        identifiers=["uuid", "email", "phone_number", orders.anonymous_identifier],
        catalog_product_attributes=sorted(config.catalog.product_attributes.values()),
    )
