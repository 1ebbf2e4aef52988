"""A commercetools cart reduced to what cart events need: its owner, market, state and one
line per SKU (Insider knows products by SKU: the catalog sync's `item_id`).

Bounded by construction: at most MAX_CART_LINES lines (the rest are counted, not followed)
and every text cut to a fixed length, so a snapshot - an activity's result, and the state a
cart's workflow carries across continue-as-new - stays under ~300 KB whatever the cart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ct_insider.commercetools.models import (
    CtModel,
    KeyReference,
    LineItemVariant,
    LocalizedString,
    Money,
    Price,
)
from ct_insider.journeys.signals import JourneyIdentity, Market
from ct_insider.mapping import money, normalize
from ct_insider.mapping.config import MappingConfig

MAX_CART_LINES = 200
MAX_SKU_CHARS = 128
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 512

CartState = Literal["Active", "Merged", "Ordered", "Frozen"]


class CartLine(BaseModel):
    """One SKU of a cart (line items of the same SKU, e.g. from two channels, add up)."""

    model_config = ConfigDict(frozen=True)

    sku: str = Field(max_length=MAX_SKU_CHARS)
    quantity: int = Field(ge=1)
    unit_price: float
    unit_sale_price: float
    currency: str
    name: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    image_url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    url: str | None = Field(default=None, max_length=MAX_URL_CHARS)


class CartSnapshot(BaseModel):
    cart_id: str
    version: int
    state: str  # CartState, or a state this version does not know (treated as not Active)
    modified_at: datetime
    owner: JourneyIdentity
    market: Market
    lines: list[CartLine] = Field(default_factory=list, max_length=MAX_CART_LINES)
    total: float | None = None
    # Lines not followed: no SKU (custom line items), no positive quantity, an amount no JSON
    # double carries exactly, or beyond MAX_CART_LINES.
    skipped_lines: int = 0

    def routing_key(self) -> str | None:
        """The profile the cart's events go to: its customer, else its visitor, else its
        email (the journeys' own rule), None when it names nobody."""
        return self.owner.routing_key()

    def quantities(self) -> dict[str, int]:
        return {line.sku: line.quantity for line in self.lines}


class _CartLineItem(CtModel):
    id: str
    name: LocalizedString = Field(default_factory=dict)
    variant: LineItemVariant
    price: Price
    quantity: int
    total_price: Money | None = None
    product_slug: LocalizedString | None = None


class CartRecord(CtModel):
    """What a cart snapshot reads of a commercetools cart."""

    id: str
    version: int
    cart_state: str = "Active"
    last_modified_at: datetime
    customer_id: str | None = None
    customer_email: str | None = None
    anonymous_id: str | None = None
    country: str | None = None
    locale: str | None = None
    store: KeyReference | None = None
    total_price: Money | None = None
    line_items: list[_CartLineItem] = Field(default_factory=list)
    custom_line_items: list[dict[str, Any]] = Field(default_factory=list)


def _cut(text: str | None, limit: int) -> str | None:
    return text[:limit] if text else None


def _line(item: _CartLineItem, config: MappingConfig, languages: list[str]) -> CartLine | None:
    sku = item.variant.sku
    if not sku or len(sku) > MAX_SKU_CHARS or item.quantity < 1:
        return None
    try:
        sale = (
            money.per_unit(item.total_price, item.quantity)
            if item.total_price
            else money.amount(
                item.price.discounted.value if item.price.discounted else item.price.value
            )
        )
        unit_price = money.amount(item.price.value)
    except money.InexactAmount:
        return None  # counted as skipped, like a line without a SKU
    slug = normalize.localized(item.product_slug, languages) if item.product_slug else None
    url = (
        config.catalog.url_template.format(language=languages[0].split("-")[0], slug=slug)
        if slug
        else None
    )
    return CartLine(
        sku=sku,
        quantity=item.quantity,
        unit_price=unit_price,
        unit_sale_price=sale,
        currency=item.price.value.currency_code,
        name=_cut(normalize.localized(item.name, languages), MAX_NAME_CHARS),
        image_url=_cut(item.variant.images[0].url if item.variant.images else None, MAX_URL_CHARS),
        url=_cut(url, MAX_URL_CHARS),
    )


def _total(total: Money | None) -> float | None:
    """The cart's total, None when there is none or no JSON double carries it exactly."""
    try:
        return money.amount(total) if total else None
    except money.InexactAmount:
        return None


def _channel(cart: CartRecord, config: MappingConfig) -> str:
    """The sales channel, as order events name it (a store's channel, else the default)."""
    rules = config.orders
    if cart.store and cart.store.key in rules.store_channels:
        return rules.store_channels[cart.store.key]
    return rules.default_channel


def snapshot(cart: CartRecord, config: MappingConfig) -> CartSnapshot:
    """Pure: the cart as cart events see it. Raises nothing for a cart it can read."""
    languages = normalize.language_preference(cart.locale, config.default_language)
    by_sku: dict[str, CartLine] = {}
    skipped = len(cart.custom_line_items)
    for item in cart.line_items:
        line = _line(item, config, languages)
        if line is None:
            skipped += 1
            continue
        known = by_sku.get(line.sku)
        if known is not None:
            by_sku[line.sku] = known.model_copy(update={"quantity": known.quantity + line.quantity})
        elif len(by_sku) < MAX_CART_LINES:
            by_sku[line.sku] = line
        else:
            skipped += 1
    country = normalize.country_code(cart.country)
    currency = cart.total_price.currency_code if cart.total_price else None
    return CartSnapshot(
        cart_id=cart.id,
        version=cart.version,
        state=cart.cart_state,
        modified_at=cart.last_modified_at,
        owner=JourneyIdentity(
            customer_id=cart.customer_id,
            anonymous_id=cart.anonymous_id,
            email=cart.customer_email,
        ),
        market=Market(
            channel=_channel(cart, config),
            currency=currency,
            language=normalize.insider_language(cart.locale, country),
            country=country,
            store=cart.store.key if cart.store else None,
        ),
        lines=sorted(by_sku.values(), key=lambda line: line.sku),
        total=_total(cart.total_price),
        skipped_lines=skipped,
    )
