"""commercetools Order -> Insider purchase, refund and cancellation events on one profile.

Every event carries a `key` that is stable for the life of the order (e.g.
`purchase:<line item id>`), so the delivery ledger can tell what was already sent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ct_insider.commercetools.models import (
    Attribute,
    CustomLineItem,
    LineItem,
    LocalizedString,
    Order,
    Payment,
)
from ct_insider.insider.models import Attributes, Event, Identifiers, User
from ct_insider.mapping import money, normalize
from ct_insider.mapping.attributes import attribute_value
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.identifiers import resolve_identifiers


@dataclass(frozen=True)
class KeyedEvent:
    key: str
    event: Event


@dataclass(frozen=True)
class OrderContext:
    """Lookups the mapping cannot do itself; the caller resolves them per batch."""

    # customer id -> Insider uuid, when the uuid is not the customer id itself
    customer_uuids: Mapping[str, str] = field(default_factory=dict)
    # product id -> category names, ancestors first
    taxonomies: Mapping[str, list[LocalizedString]] = field(default_factory=dict)
    # Emails (normalized) of registered customers among the batch's guest orders: their
    # profile belongs to the customer record, which a guest order must not overwrite.
    registered_emails: Collection[str] = frozenset()


@dataclass(frozen=True)
class MappedOrder:
    order_id: str
    identifiers: Identifiers | None
    attributes: Attributes | None
    events: list[KeyedEvent]
    warnings: list[str] = field(default_factory=list)
    rejection: str | None = None

    def user(self, skip: frozenset[str] = frozenset()) -> User | None:
        """The upsert for the events not in `skip`; None when nothing is left to send."""
        events = [keyed.event for keyed in self.events if keyed.key not in skip]
        if self.identifiers is None or not events:
            return None
        return User(identifiers=self.identifiers, attributes=self.attributes, events=events)


@dataclass(frozen=True)
class _Line:
    """A line item or custom line item, reduced to what events need."""

    id: str
    product_id: str | None
    name: LocalizedString
    quantity: int
    unit_price: float
    unit_sale_price: float
    currency: str
    product_id_required: bool
    image_url: str | None = None
    attributes: tuple[Attribute, ...] = ()
    custom_line: bool = False
    product: str | None = None


def _line_item(line: LineItem) -> _Line:
    sale = (
        money.per_unit(line.total_price, line.quantity)
        if line.total_price
        else money.amount(
            line.price.discounted.value if line.price.discounted else line.price.value
        )
    )
    return _Line(
        id=line.id,
        product_id=line.variant.sku,
        name=line.name,
        quantity=line.quantity,
        unit_price=money.amount(line.price.value),
        unit_sale_price=sale,
        currency=line.price.value.currency_code,
        product_id_required=True,
        image_url=line.variant.images[0].url if line.variant.images else None,
        attributes=tuple(line.variant.attributes),
        product=line.product_id,
    )


def _custom_line_item(line: CustomLineItem) -> _Line:
    sale = money.per_unit(line.total_price, line.quantity) if line.total_price else None
    unit = money.amount(line.money)
    return _Line(
        id=line.id,
        product_id=line.slug or line.id,
        name=line.name,
        quantity=line.quantity,
        unit_price=unit,
        unit_sale_price=sale if sale is not None else unit,
        currency=line.money.currency_code,
        product_id_required=False,
        custom_line=True,
    )


class _OrderMapper:
    def __init__(self, order: Order, config: MappingConfig, context: OrderContext) -> None:
        self.order = order
        self.config = config
        self.rules = config.orders
        self.context = context
        self.warnings: list[str] = []
        self.pref = normalize.language_preference(order.locale, config.default_language)
        self.group_id = order.order_number or order.id
        self.common = self._common_custom()

    def _country(self) -> str | None:
        address = self.order.shipping_address or self.order.billing_address
        return normalize.country_code(self.order.country or (address.country if address else None))

    def _channel(self) -> str:
        fields = self.order.custom.fields if self.order.custom else {}
        from_field = fields.get(self.rules.channel_field) if self.rules.channel_field else None
        if isinstance(from_field, str) and from_field:
            return from_field
        if self.order.store and self.order.store.key in self.rules.store_channels:
            return self.rules.store_channels[self.order.store.key]
        return self.rules.default_channel

    def _common_custom(self) -> dict[str, Any]:
        codes = [
            str(info.discount_code.obj.get("code"))
            if info.discount_code.obj and info.discount_code.obj.get("code")
            else info.discount_code.id
            for info in self.order.discount_codes
        ]
        shipping = self.order.shipping_info.price if self.order.shipping_info else None
        custom: dict[str, Any] = {
            "order_id": self.order.id,
            "store": self.order.store.key if self.order.store else None,
            "country": self._country(),
            "channel": self._channel(),
            "discount_codes": codes or None,
            "shipping_cost": money.amount(shipping) if shipping else None,
        }
        return {key: value for key, value in custom.items() if value is not None}

    def identifiers(self) -> Identifiers:
        order = self.order
        return resolve_identifiers(
            self.config,
            customer_id=order.customer_id,
            email=order.customer_email,
            anonymous_id=order.anonymous_id,
            customer_uuids=self.context.customer_uuids,
            warnings=self.warnings,
        )

    def guest_attributes(self, identifiers: Identifiers) -> Attributes | None:
        """A guest's order is all we know of them; a registered customer's profile is synced
        from the customer record (an old order's email must not overwrite a newer one), and
        so is the profile a guest order reaches through a registered customer's email: the
        customer record is the authority on its country, city and language."""
        if self.order.customer_id or identifiers.email is None:
            return None
        if identifiers.email in self.context.registered_emails:
            return None
        return Attributes(
            email=identifiers.email,
            language=normalize.insider_language(self.order.locale, self._country()),
            country=self._country(),
        )

    def lines(self) -> list[_Line]:
        lines = [_line_item(line) for line in self.order.line_items]
        if self.rules.include_custom_line_items:
            lines.extend(_custom_line_item(line) for line in self.order.custom_line_items)
        usable = []
        for line in lines:
            if line.product_id_required and not line.product_id:
                self.warnings.append(f"line item {line.id} has no SKU: no event for it")
                continue
            usable.append(line)
        return usable

    def line_params(self, line: _Line, quantity: int | None = None) -> dict[str, Any]:
        taxonomy = [
            name
            for name in (
                normalize.localized(category, self.pref)
                for category in self.context.taxonomies.get(line.product or "", [])
            )
            if name
        ]
        params: dict[str, Any] = {
            "product_id": line.product_id,
            "name": normalize.localized(line.name, self.pref),
            "taxonomy": taxonomy or None,
            "currency": line.currency,
            "unit_price": line.unit_price,
            "unit_sale_price": line.unit_sale_price,
            "quantity": quantity if quantity is not None else line.quantity,
            "event_group_id": self.group_id,
            "product_image_url": line.image_url,
            "locale": normalize.insider_language(self.order.locale, self._country()),
            "color": attribute_value(line.attributes, self.rules.color_attribute, self.pref),
            "size": attribute_value(line.attributes, self.rules.size_attribute, self.pref),
        }
        custom = dict(self.common)
        if line.custom_line:
            custom["custom_line_item"] = True
        params["custom"] = custom
        return {key: value for key, value in params.items() if value is not None}

    def event(self, key: str, name: str, when: datetime, params: dict[str, Any]) -> KeyedEvent:
        return KeyedEvent(
            key, Event(event_name=name, timestamp=normalize.timestamp(when), event_params=params)
        )

    def purchases(self, lines: list[_Line]) -> list[KeyedEvent]:
        placed = self.order.created_at
        if self.rules.purchase_time == "completedAt" and self.order.completed_at:
            placed = self.order.completed_at
        return [
            self.event(
                f"purchase:{line.id}", self.rules.purchase_event, placed, self.line_params(line)
            )
            for line in lines
        ]

    def payment_refunds(self) -> list[KeyedEvent]:
        events = []
        for reference in self.order.payment_info.payments if self.order.payment_info else []:
            if reference.obj is None:
                self.warnings.append(
                    f"payment {reference.id} not readable: its refunds are not sent"
                )
                continue
            payment = Payment.model_validate(reference.obj)
            for tx in payment.transactions:
                if tx.type != "Refund" or tx.state != "Success":
                    continue
                value = money.amount(tx.amount)
                params = {
                    "currency": tx.amount.currency_code,
                    "unit_price": value,
                    "unit_sale_price": value,
                    "quantity": 1,
                    "event_group_id": self.group_id,
                    "custom": {
                        **self.common,
                        "refund_source": "payment",
                        "transaction_id": tx.id,
                    },
                }
                when = tx.timestamp or payment.last_modified_at or self.order.last_modified_at
                events.append(
                    self.event(f"refund:transaction:{tx.id}", self.rules.refund_event, when, params)
                )
        return events

    def return_refunds(self, lines: list[_Line]) -> list[KeyedEvent]:
        by_id = {line.id: line for line in lines}
        events = []
        for info in self.order.return_info:
            for item in info.items:
                if item.payment_state != "Refunded":
                    continue
                line = by_id.get(item.line_item_id or item.custom_line_item_id or "")
                if line is None:
                    self.warnings.append(f"return item {item.id} names no known line: not sent")
                    continue
                params = self.line_params(line, quantity=item.quantity)
                params["custom"] = {
                    **params["custom"],
                    "refund_source": "return",
                    "return_item_id": item.id,
                }
                when = item.last_modified_at or info.return_date or self.order.last_modified_at
                events.append(
                    self.event(f"refund:return:{item.id}", self.rules.refund_event, when, params)
                )
        return events

    def cancellations(self, lines: list[_Line]) -> list[KeyedEvent]:
        if self.order.order_state != "Cancelled":
            return []
        # commercetools records no cancellation time; the order's last change is the best one.
        return [
            self.event(
                f"cancellation:{line.id}",
                self.rules.cancellation_event,
                self.order.last_modified_at,
                self.line_params(line),
            )
            for line in lines
        ]


def map_order(order: Order, config: MappingConfig, context: OrderContext) -> MappedOrder:
    """Every event the order's current state implies; the ledger decides which are new."""
    try:
        return _map_order(order, config, context)
    except money.InexactAmount as exc:
        # One amount that cannot be sent exactly refuses the order (a sync would otherwise
        # retry it forever); none of its events is sent with a wrong amount.
        return MappedOrder(order.id, None, None, [], rejection=f"{exc}: the order is not sent")


def _map_order(order: Order, config: MappingConfig, context: OrderContext) -> MappedOrder:
    mapper = _OrderMapper(order, config, context)
    identifiers = mapper.identifiers()
    if identifiers.is_empty():
        return MappedOrder(
            order.id,
            None,
            None,
            [],
            mapper.warnings,
            rejection="no usable identifier (customer, valid email or anonymous id)",
        )
    lines = mapper.lines()
    sources = config.orders.refund_sources
    events = [
        *mapper.purchases(lines),
        *(mapper.payment_refunds() if "payments" in sources else []),
        *(mapper.return_refunds(lines) if "returns" in sources else []),
        *mapper.cancellations(lines),
    ]
    if not events:
        return MappedOrder(
            order.id, identifiers, None, [], mapper.warnings, rejection="no line item with a SKU"
        )
    return MappedOrder(
        order.id, identifiers, mapper.guest_attributes(identifiers), events, mapper.warnings
    )
