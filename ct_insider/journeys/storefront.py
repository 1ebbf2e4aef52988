"""Storefront behavioral events: the `/events` schema and its mapping to Insider events."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from ct_insider.insider.models import Event
from ct_insider.mapping import money, normalize

StorefrontEventType = Literal[
    "product_view",
    "listing_view",
    "add_to_cart",
    "remove_from_cart",
    "cart_view",
    "checkout_started",
    "wishlist_add",
    "wishlist_remove",
    "sign_in",
]

# Insider's default e-commerce event names. Wishlist and sign-in have no documented system
# name; these are custom events (define them in InOne).
INSIDER_EVENT_NAMES: dict[str, str] = {
    "product_view": "product_detail_page_view",
    "listing_view": "listing_page_view",
    "add_to_cart": "item_added_to_cart",
    "remove_from_cart": "item_removed_from_cart",
    "cart_view": "cart_page_view",
    "checkout_started": "checkout_page_view",
    "wishlist_add": "item_added_to_wishlist",
    "wishlist_remove": "item_removed_from_wishlist",
    "sign_in": "login",
}


# The bridge validates what arrives with this context: the rules it adds hold for new events
# only. A StorefrontEvent is also the payload of signals Temporal stores: decoding one the
# bridge accepted before a rule existed must not fail in a workflow (its mapping refuses it
# instead, with the reason, and the journey dead-letters it).
INTAKE: dict[str, bool] = {"intake": True}


def _at_intake(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("intake"))


def _exact_json_number(value: Decimal, info: ValidationInfo) -> Decimal:
    if _at_intake(info):
        money.json_number(value)  # InexactAmount (a ValueError): the event is refused, 422
    return value


# An amount Insider gets exactly as sent: refused at the door otherwise (a price like
# 0.12345678901234567 or 1e400 could only be sent rounded, or not at all).
Amount = Annotated[Decimal, AfterValidator(_exact_json_number)]

# The moments an event may carry: Insider dates events in UTC, and nothing before the Unix
# epoch happened on a storefront (a year-1 or year-9999 moment with an offset is not even a
# datetime once moved to UTC).
EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_EVENT = datetime(9999, 1, 1, tzinfo=UTC)


def _event_moment(value: datetime, info: ValidationInfo) -> datetime:
    if not _at_intake(info):
        return value
    try:
        in_range = EARLIEST_EVENT <= value.astimezone(UTC) < LATEST_EVENT
    except OverflowError:
        in_range = False
    if not in_range:
        raise ValueError("occurred_at must be a moment from 1970 to 9998 (UTC)")
    return value


_NEEDS_SKU = {"product_view", "add_to_cart", "remove_from_cart", "wishlist_add", "wishlist_remove"}
_NEEDS_CART = {"cart_view", "checkout_started"}


class EventIdentity(BaseModel):
    """Who did it: at least one of the three."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(default=None, min_length=1, max_length=256)
    anonymous_id: str | None = Field(default=None, min_length=1, max_length=256)
    email: str | None = Field(default=None, min_length=3, max_length=320)

    @model_validator(mode="after")
    def _someone(self) -> EventIdentity:
        if not (self.customer_id or self.anonymous_id or self.email):
            raise ValueError("identity needs customer_id, anonymous_id or email")
        return self


class EventProduct(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=256)
    quantity: int = Field(default=1, ge=1)
    price: Amount | None = Field(default=None, ge=0, description="unit price before discounts")
    sale_price: Amount | None = Field(default=None, ge=0, description="unit price paid")
    name: str | None = Field(default=None, max_length=1024)
    image_url: str | None = Field(default=None, max_length=2048)
    url: str | None = Field(default=None, max_length=2048)
    categories: list[str] = Field(
        default_factory=list, max_length=20, description="path, root first"
    )


class StorefrontEvent(BaseModel):
    """One shopper action, as the storefront reports it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "0f7c1d2e-5b9a-4b8e-9d1f-3c2b1a0e9f87",
                    "type": "add_to_cart",
                    "occurred_at": "2026-11-26T18:30:00Z",
                    "identity": {"anonymous_id": "a-81f2"},
                    "sku": "RUN-42-BLK",
                    "quantity": 1,
                    "price": "129.99",
                    "currency": "EUR",
                    "locale": "de-DE",
                    "cart_id": "cart-7",
                    "url": "https://shop.example.com/de/p/run-42",
                }
            ]
        },
    )

    event_id: str = Field(min_length=1, max_length=128, description="idempotency key")
    type: StorefrontEventType
    occurred_at: Annotated[AwareDatetime, AfterValidator(_event_moment)]
    identity: EventIdentity
    sku: str | None = Field(default=None, min_length=1, max_length=256)
    quantity: int | None = Field(default=None, ge=1)
    price: Amount | None = Field(default=None, ge=0)
    sale_price: Amount | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    locale: str | None = Field(default=None, max_length=16)
    url: str | None = Field(default=None, max_length=2048)
    name: str | None = Field(default=None, max_length=1024)
    image_url: str | None = Field(default=None, max_length=2048)
    categories: list[str] = Field(
        default_factory=list, max_length=20, description="path, root first"
    )
    cart_id: str | None = Field(default=None, max_length=256)
    cart_total: Amount | None = Field(default=None, ge=0)
    products: list[EventProduct] = Field(
        default_factory=list,
        max_length=100,
        description="lines of a cart or checkout, items of a listing",
    )
    channel: str | None = Field(default=None, max_length=64, description="web, app, store, ...")
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    store: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _fields_for_type(self, info: ValidationInfo) -> StorefrontEvent:
        if self.type in _NEEDS_SKU and not self.sku:
            raise ValueError(f"{self.type} needs sku")
        if self.type in _NEEDS_CART and not self.cart_id:
            raise ValueError(f"{self.type} needs cart_id")
        if self.type in _NEEDS_CART and not self.currency:
            raise ValueError(f"{self.type} needs currency")
        if self.type in _NEEDS_CART and _at_intake(info):
            # Each line is an event of its own, which Insider refuses without unit_sale_price.
            unpriced = [
                n for n, p in enumerate(self.products) if p.price is None and p.sale_price is None
            ]
            if unpriced:
                raise ValueError(
                    f"{self.type} products {unpriced} need price or sale_price "
                    "(Insider requires a unit sale price on each line)"
                )
        return self


MAX_EVENTS_PER_REQUEST = 500


class StorefrontBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[StorefrontEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


def _amount(value: Decimal | None) -> float | None:
    return money.json_number(value) if value is not None else None


def _product_params(
    sku: str | None,
    quantity: int | None,
    price: Decimal | None,
    sale_price: Decimal | None,
    name: str | None,
    image_url: str | None,
    url: str | None,
    categories: list[str],
) -> dict[str, Any]:
    unit_price = _amount(price)
    return {
        "product_id": sku,
        "quantity": quantity,
        "unit_price": unit_price,
        "unit_sale_price": _amount(sale_price) if sale_price is not None else unit_price,
        "name": name,
        "product_image_url": image_url,
        "url": url,
        "taxonomy": categories or None,
    }


def _shared_path(paths: list[list[str]]) -> list[str]:
    """The category path every listed product is filed under (root first)."""
    shared: list[str] = []
    for level in zip(*paths, strict=False):
        if any(name != level[0] for name in level):
            break
        shared.append(level[0])
    return shared


def _listing_params(event: StorefrontEvent) -> dict[str, Any]:
    """Insider's listing event is one page view: the listing's category path (`taxonomy`) and
    url, not product lines. The products shown go along as the custom param `product_ids`
    (SKUs, in the order shown; define it in InOne as an array), so a listing without its own
    path still gets the one its products share."""
    paths = [p.categories for p in event.products if p.categories]
    taxonomy = event.categories or (_shared_path(paths) if paths else [])
    return {
        "product_id": event.sku,
        "url": event.url,
        "taxonomy": taxonomy or None,
    }


def map_storefront_event(
    event: StorefrontEvent,
    *,
    currency: str | None,
    language: str | None,
    custom: dict[str, Any],
) -> list[Event]:
    """Insider events for one storefront event: one per product line for cart and checkout
    views (lines share the cart as event_group_id), else one."""
    name = INSIDER_EVENT_NAMES[event.type]
    timestamp = normalize.timestamp(event.occurred_at)
    common: dict[str, Any] = {
        "currency": event.currency or currency,
        "locale": language,
        "event_group_id": event.cart_id,
        "custom": {"event_id": event.event_id, **custom},
    }
    lines: list[dict[str, Any]]
    if event.type == "listing_view":
        lines = [_listing_params(event)]
        if event.products:
            common["custom"]["product_ids"] = [p.sku for p in event.products]
    elif event.type in _NEEDS_CART and event.products:
        lines = [
            _product_params(
                p.sku, p.quantity, p.price, p.sale_price, p.name, p.image_url, p.url, p.categories
            )
            for p in event.products
        ]
    elif event.type in _NEEDS_CART:
        total = _amount(event.cart_total) if event.cart_total is not None else 0.0
        lines = [{"unit_sale_price": total, "unit_price": total, "quantity": 1, "url": event.url}]
    else:
        lines = [
            _product_params(
                event.sku,
                event.quantity or (1 if event.sku else None),
                event.price,
                event.sale_price,
                event.name,
                event.image_url,
                event.url,
                event.categories,
            )
        ]
    return [
        Event(
            event_name=name,
            timestamp=timestamp,
            event_params={
                key: value for key, value in {**common, **line}.items() if value is not None
            },
        )
        for line in lines
    ]
