"""Which commercetools notifications the connector consumes: the one list both the bridge
(what it routes, everything else is acknowledged as ignored) and `ct-insider setup
commercetools` (what the Subscription asks commercetools for) read, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping

# An empty tuple asks for every message type of the resource (commercetools' `types: []`).
EVERY_TYPE: tuple[str, ...] = ()

MESSAGE_TYPES: Mapping[str, tuple[str, ...]] = {
    # Any customer change re-reads the customer and upserts the profile.
    "customer": EVERY_TYPE,
    # Purchases, cancellations and refunds: each re-reads the order (the delivery ledger
    # keeps its events once).
    "order": (
        "OrderCreated",
        "OrderImported",
        "OrderStateChanged",
        "OrderPaymentStateChanged",
        "OrderPaymentAdded",
        "OrderCustomerSet",
        "OrderEditApplied",
        "ReturnInfoAdded",
        "ReturnInfoSet",
    ),
    # A refund transaction changes the payment, not the order.
    "payment": ("PaymentTransactionAdded", "PaymentTransactionStateChanged"),
    # What changes a published product's items, prices or presence (staged-only changes are
    # acknowledged as ignored when they arrive).
    "product": (
        "ProductPublished",
        "ProductUnpublished",
        "ProductDeleted",
        "ProductPriceAdded",
        "ProductPriceChanged",
        "ProductPriceRemoved",
        "ProductPricesSet",
        "ProductPriceDiscountsSet",
        "ProductPriceExternalDiscountSet",
        "ProductPriceModeSet",
        "ProductVariantAdded",
        "ProductVariantDeleted",
    ),
    "inventory-entry": (
        "InventoryEntryCreated",
        "InventoryEntryDeleted",
        "InventoryEntryQuantitySet",
    ),
    "standalone-price": (
        "StandalonePriceCreated",
        "StandalonePriceDeleted",
        "StandalonePriceValueChanged",
        "StandalonePriceDiscountSet",
        "StandalonePriceExternalDiscountSet",
        "StandalonePriceActiveChanged",
    ),
    # A renamed or moved category changes the category path of every product under it.
    "category": EVERY_TYPE,
}

# Change notifications (ResourceCreated/Updated/Deleted), by resource type. Orders: a
# return item's refund (setReturnPaymentState) produces no message at all.
CHANGE_RESOURCE_TYPES: tuple[str, ...] = ("order",)
# Change notifications the bridge also routes when a retailer's own subscription sends them,
# though setup does not ask for them (the messages above carry the same news): a customer's
# ResourceDeleted is a deletion, a payment's change may hold a refund.
ALSO_ROUTED_CHANGES: tuple[str, ...] = ("customer", "payment")

CHANGE_NOTIFICATION_TYPES = frozenset({"ResourceCreated", "ResourceUpdated", "ResourceDeleted"})

# With cart events on (CART_EVENTS_ENABLED): every change of a cart (commercetools has no
# line-item messages; a cart's workflow reads the cart and compares its lines), and the
# state messages that change whether a cart can be reminded.
CART_CHANGE_RESOURCE_TYPES: tuple[str, ...] = ("cart",)
CART_MESSAGE_TYPES: Mapping[str, tuple[str, ...]] = {"cart": ("CartFrozen", "CartUnfrozen")}


def message_types(carts: bool = False) -> Mapping[str, tuple[str, ...]]:
    """The messages setup subscribes to (and the bridge routes)."""
    return {**MESSAGE_TYPES, **CART_MESSAGE_TYPES} if carts else MESSAGE_TYPES


def change_resource_types(carts: bool = False) -> tuple[str, ...]:
    """The resources whose change notifications setup subscribes to."""
    return CHANGE_RESOURCE_TYPES + (CART_CHANGE_RESOURCE_TYPES if carts else ())


def consumes(
    resource_type: str, notification_type: str, message_type: str, *, carts: bool = False
) -> bool:
    """Whether the bridge routes a notification (everything setup subscribes to, and the
    change notifications in ALSO_ROUTED_CHANGES); cart notifications only with `carts`."""
    if notification_type in CHANGE_NOTIFICATION_TYPES:
        return resource_type in change_resource_types(carts) or resource_type in ALSO_ROUTED_CHANGES
    types = message_types(carts).get(resource_type)
    if types is None:
        return False
    return types == EVERY_TYPE or message_type in types
