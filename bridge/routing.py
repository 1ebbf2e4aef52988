"""Which journey a notification or storefront event belongs to, and what it says."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from pydantic import ValidationError

from bridge.carts import CartSignal, cart_notification_signal, ordered_cart_signal
from bridge.letters import Refusal, refused_read, subject_letter
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.commercetools.models import CtModel
from ct_insider.commercetools.notifications import consumes
from ct_insider.commercetools.queries import orders_holding_payments
from ct_insider.journeys.envelopes import Notification
from ct_insider.journeys.intake import DELETION_TYPES
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal, Market
from ct_insider.journeys.storefront import StorefrontEvent
from ct_insider.mapping import normalize
from ct_insider.sync.reports import validation_reasons
from workflows.catalog_changes import CatalogChange

# An order deletion arrives with the order change notifications (setup subscribes to them).
IGNORED_ORDER_TYPES = frozenset({"OrderDeleted", "ResourceDeleted"})
Routed = JourneySignal | CatalogChange | CartSignal
T = TypeVar("T")


class Ignored(Exception):
    """Acknowledged, counted, and not passed on (e.g. a message type we do not use)."""

    counter = "ignored"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Gone(Ignored):
    """The resource to read again no longer exists: there is nothing to deliver (a deletion
    the connector acts on comes as a message of its own)."""

    counter = "gone"


class Unroutable(Exception):
    """A well-formed delivery that no journey can take: dead-lettered, then acknowledged."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.letter.reasons[0])
        self.refusal = refusal


def storefront_signal(event: StorefrontEvent) -> JourneySignal:
    language = normalize.insider_language(event.locale, event.country)
    return JourneySignal(
        dedupe_key=f"event:{event.event_id}",
        kind="storefront",
        type=event.type,
        occurred_at=event.occurred_at,
        identity=JourneyIdentity(
            customer_id=event.identity.customer_id,
            anonymous_id=event.identity.anonymous_id,
            email=event.identity.email,
        ),
        market=Market(
            channel=event.channel,
            currency=event.currency,
            language=language,
            country=event.country,
            store=event.store,
        ),
        storefront=event,
    )


class _Currency(CtModel):
    currency_code: str | None = None


class _Country(CtModel):
    country: str | None = None


class _Key(CtModel):
    key: str | None = None


class OrderParty(CtModel):
    """What routing reads of an order: whose it is, and its market."""

    id: str
    customer_id: str | None = None
    anonymous_id: str | None = None
    customer_email: str | None = None
    country: str | None = None
    locale: str | None = None
    shipping_address: _Country | None = None
    store: _Key | None = None
    total_price: _Currency | None = None


def _order_identity(order: OrderParty) -> tuple[JourneyIdentity, Market]:
    shipping = order.shipping_address or _Country()
    country = normalize.country_code(order.country or shipping.country)
    identity = JourneyIdentity(
        customer_id=order.customer_id,
        anonymous_id=order.anonymous_id,
        email=order.customer_email,
    )
    market = Market(
        currency=order.total_price.currency_code if order.total_price else None,
        language=normalize.insider_language(order.locale, country),
        country=country,
        store=order.store.key if order.store else None,
    )
    return identity, market


class _CustomerFacts(CtModel):
    email: str | None = None
    locale: str | None = None


class NotificationRouter:
    """Turns a commercetools notification into journey signals, reading commercetools only
    when the notification does not say whose it is (e.g. a payment, or no payload)."""

    def __init__(self, ct: CommercetoolsClient, *, carts: bool = False) -> None:
        """`carts`: CART_EVENTS_ENABLED (cart notifications go to the carts' workflows)."""
        self._ct = ct
        self._carts = carts

    async def signals(self, notification: Notification) -> list[Routed]:
        """Raises Ignored (nothing to do), Unroutable (dead-letter it), or what a retry can
        fix: a CommercetoolsError that is `retryable`, an httpx.TransportError."""
        try:
            return await self._signals(notification)
        except ValidationError as exc:
            reason = f"unreadable payload: {'; '.join(validation_reasons(exc))}"
            raise Unroutable(Refusal("unreadable", subject_letter(notification, reason))) from exc

    async def _read(self, notification: Notification, resource: str, read: Awaitable[T]) -> T:
        """A read of `resource` (an endpoint) the notification needs. A refusal for good
        (4xx: a missing scope, a query commercetools rejects) makes it unroutable; what a
        retry can fix (5xx, 429, no answer) goes up: the client's own `retryable` decides."""
        try:
            return await read
        except CommercetoolsError as exc:
            if exc.retryable:
                raise
            raise Unroutable(refused_read(notification, resource, exc)) from exc

    async def _signals(self, notification: Notification) -> list[Routed]:
        kind = notification.resource_type
        # The same list `ct-insider setup commercetools` subscribes to.
        if not consumes(kind, notification.notification_type, notification.type, carts=self._carts):
            raise Ignored(f"{notification.type} on {kind or 'unknown'} resources is not used")
        if kind == "cart":
            return [cart_notification_signal(notification)]
        if kind == "customer":
            return [self._customer(notification)]
        if kind == "order":
            return list(await self._order(notification))
        if kind == "payment":
            return list(await self._payment(notification))
        if kind in ("product", "inventory-entry", "standalone-price", "category"):
            return list(await self._catalog(notification))
        raise Ignored(f"{notification.type} on {kind or 'unknown'} resources is not used")

    async def _catalog(self, notification: Notification) -> list[CatalogChange]:
        if notification.payload.get("staged") is True:
            raise Ignored(f"{notification.type} changed staged data only")
        key = notification.id
        if notification.resource_type == "product":
            return [CatalogChange(dedupe_key=key, product_id=notification.resource_id)]
        if notification.resource_type == "category":
            return [CatalogChange(dedupe_key=key, category_id=notification.resource_id)]
        # Stock and standalone prices name a SKU: the products holding it are refreshed.
        sku = notification.payload.get("sku")
        if not sku:
            path = (
                "inventory"
                if notification.resource_type == "inventory-entry"
                else "standalone-prices"
            )
            resource = await self._read(
                notification,
                path,
                self._ct.get_by_id(path, notification.resource_id),
            )
            if resource is None:
                raise Gone(f"{notification.resource_type} {notification.resource_id} is gone")
            sku = resource.get("sku")
        if not sku:
            raise Ignored(f"{notification.type}: no SKU to find the product by")
        # The catalog-change workflow finds the products holding it, for a whole batch.
        return [CatalogChange(dedupe_key=key, sku=str(sku))]

    def _customer(self, notification: Notification) -> JourneySignal:
        payload = notification.payload
        found = payload.get("customer")
        customer = _CustomerFacts.model_validate(found if isinstance(found, dict) else {})
        email = payload.get("email") or customer.email
        return JourneySignal(
            dedupe_key=notification.id,
            kind="customer",
            type=notification.type,
            occurred_at=notification.occurred_at,
            identity=JourneyIdentity(customer_id=notification.resource_id, email=email),
            resource_id=notification.resource_id,
            resource_version=notification.resource_version,
            sequence_number=notification.sequence_number,
            market=Market(language=normalize.insider_language(customer.locale)),
            previous_email=payload.get("oldEmail"),
            user_provided=(notification.user_provided or None)
            if notification.type in DELETION_TYPES
            else None,
        )

    async def _order(self, notification: Notification) -> list[JourneySignal | CartSignal]:
        if notification.type in IGNORED_ORDER_TYPES:
            raise Ignored(f"{notification.type}: Insider keeps the purchase history")
        order = notification.payload.get("order")
        if not isinstance(order, dict):
            order = await self._read(
                notification,
                "orders",
                self._ct.get_by_id("orders", notification.resource_id),
            )
            if order is None:
                raise Gone(f"order {notification.resource_id} no longer exists")
        routed: list[JourneySignal | CartSignal] = [
            self._order_signal(notification, order, notification.id)
        ]
        cart = order.get("cart")
        if self._carts and isinstance(cart, dict) and isinstance(cart.get("id"), str):
            # The cart's reminders end with its order (the workflow also checks on reading).
            routed.append(ordered_cart_signal(cart["id"], notification))
        return routed

    async def _payment(self, notification: Notification) -> list[JourneySignal]:
        orders = await self._read(
            notification,
            "orders",
            orders_holding_payments(self._ct, [notification.resource_id]),
        )
        if not orders:
            raise Ignored(f"payment {notification.resource_id} belongs to no order yet")
        return [
            self._order_signal(notification, order, f"{notification.id}:{order['id']}")
            for order in orders
        ]

    @staticmethod
    def _order_signal(
        notification: Notification, order: dict[str, Any], dedupe_key: str
    ) -> JourneySignal:
        party = OrderParty.model_validate(order)
        identity, market = _order_identity(party)
        return JourneySignal(
            dedupe_key=dedupe_key,
            kind="order",
            type=notification.type,
            occurred_at=notification.occurred_at,
            identity=identity,
            resource_id=party.id,
            resource_version=notification.resource_version,
            sequence_number=notification.sequence_number,
            market=market,
        )
