"""commercetools product variants -> Insider catalog items, one per variant and market."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ct_insider.commercetools.models import (
    InventoryEntry,
    LocalizedString,
    Price,
    ProductProjection,
    ProductVariant,
)
from ct_insider.mapping import money, normalize
from ct_insider.mapping.attributes import attribute_value

_LOCALE = re.compile(r"^[a-z]{2,3}_[A-Z]{2}(:[A-Za-z0-9_-]+)?$")
# Insider's limit on a catalog item_id (a variant's SKU).
MAX_ITEM_ID_CHARS = 128


class Market(BaseModel):
    """One Insider locale and how commercetools prices, names and URLs are chosen for it."""

    model_config = ConfigDict(extra="forbid")

    locale: str = Field(description="Insider locale: `en_US`, or `en_US:<store>`")
    languages: list[str] = Field(min_length=1, description="commercetools languages, in order")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="price currency (ISO 4217)")
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="price country (ISO 3166-1 alpha-2)"
    )
    channel: str | None = Field(default=None, description="price channel id")
    customer_group: str | None = Field(default=None, description="price customer group id")
    supply_channel: str | None = Field(default=None, description="inventory channel id")

    @field_validator("locale")
    @classmethod
    def _insider_locale(cls, value: str) -> str:
        if not _LOCALE.match(value):
            raise ValueError(f"{value!r} is not an Insider locale like en_US or en_US:store")
        return value


class CatalogRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    markets: list[Market] = Field(
        default_factory=lambda: [
            Market(locale="en_US", languages=["en-US", "en"], currency="USD", country="US"),
            Market(locale="de_DE", languages=["de-DE", "de", "en"], currency="EUR", country="DE"),
            Market(locale="en_GB", languages=["en-GB", "en"], currency="GBP", country="GB"),
        ],
        description="one Insider item per variant and market",
    )
    # {language} is the market's first language's primary subtag, {slug} the localized slug.
    url_template: str = Field(
        default="https://shop.example.com/{language}/p/{slug}",
        description="item URL: {language} = the market's first language's primary subtag, "
        "{slug} = the localized slug",
    )
    brand_attribute: str | None = Field(
        default="brand", description="variant attribute that gives `brand`"
    )
    color_attribute: str | None = Field(
        default="color", description="variant attribute that gives `color`"
    )
    size_attribute: str | None = Field(
        default="size", description="variant attribute that gives `size`"
    )
    # Other variant attributes copied to product_attributes: {commercetools name: Insider name}.
    product_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="other variant attributes copied to product_attributes "
        "({commercetools name: Insider name})",
    )


@dataclass(frozen=True)
class CatalogItem:
    """One item for one market, or the reason it cannot be sent."""

    item_id: str
    locale: str
    item: dict[str, Any] | None
    rejection: str | None = None


def select_price(prices: list[Price], market: Market, at: datetime) -> Price | None:
    """commercetools price selection: currency must match; country, channel and customer
    group match or are unset; the price must be valid at `at`; the most specific wins."""
    best: tuple[int, Price] | None = None
    for price in prices:
        if price.value.currency_code != market.currency:
            continue
        if price.valid_from and price.valid_from > at:
            continue
        if price.valid_until and price.valid_until <= at:
            continue
        scope = (
            (price.country, market.country),
            (price.channel.id if price.channel else None, market.channel),
            (price.customer_group.id if price.customer_group else None, market.customer_group),
        )
        if any(have is not None and have != want for have, want in scope):
            continue
        specificity = sum(1 for have, _ in scope if have is not None)
        if price.valid_from or price.valid_until:
            specificity += 1  # a dated price beats an undated one of the same scope
        if best is None or specificity > best[0]:
            best = (specificity, price)
    return best[1] if best else None


def _stock(variant: ProductVariant, inventory: InventoryEntry | None) -> tuple[int, int | None]:
    if inventory is not None:
        available = max(0, inventory.available_quantity)
        return (1 if available > 0 else 0), available
    availability = variant.availability
    if availability is not None:
        quantity = availability.available_quantity
        on_stock = availability.is_on_stock
        if on_stock is None and quantity is not None:
            on_stock = quantity > 0
        return (1 if on_stock else 0), (max(0, quantity) if quantity is not None else None)
    # No inventory tracking for this SKU: commercetools sells it without limit.
    return 1, None


def map_variant(
    product: ProductProjection,
    variant: ProductVariant,
    market: Market,
    rules: CatalogRules,
    *,
    taxonomy: list[LocalizedString],
    inventory: InventoryEntry | None,
    at: datetime,
    standalone_prices: list[Price] | None = None,
) -> CatalogItem:
    languages = [*market.languages]
    if not variant.sku:
        return CatalogItem(
            f"{product.id}/{variant.id}", market.locale, None, rejection="variant has no SKU"
        )
    if len(variant.sku) > MAX_ITEM_ID_CHARS:
        return CatalogItem(
            variant.sku,
            market.locale,
            None,
            rejection=f"SKU longer than {MAX_ITEM_ID_CHARS} characters (Insider's item_id limit)",
        )
    name = normalize.localized(product.name, languages)
    slug = normalize.localized(product.slug, languages)
    url = normalize.web_url(
        rules.url_template.format(language=languages[0].split("-")[0], slug=slug) if slug else None
    )
    # The first image Insider can show (an ftp: or relative one cannot be).
    image = next((shown for i in variant.images if (shown := normalize.web_url(i.url))), None)
    # Standalone prices when the product says so, or when it has no embedded prices.
    use_standalone = product.price_mode == "Standalone" or not variant.prices
    price = select_price(
        (standalone_prices or []) if use_standalone else variant.prices, market, at
    )
    missing = [
        label
        for label, value in (("name", name), ("url", url), ("image", image), ("price", price))
        if not value
    ]
    if missing:
        return CatalogItem(
            variant.sku,
            market.locale,
            None,
            rejection=f"no {', '.join(missing)} for {market.locale}",
        )
    assert price is not None
    try:
        original = money.amount(price.value)
        current = money.amount(price.discounted.value) if price.discounted else original
    except money.InexactAmount as exc:
        return CatalogItem(variant.sku, market.locale, None, rejection=f"price: {exc}")
    in_stock, stock_count = _stock(variant, inventory)
    categories = [c for c in (normalize.localized(n, languages) for n in taxonomy) if c]
    extra = {
        target: value
        for source, target in rules.product_attributes.items()
        if (value := attribute_value(variant.attributes, source, languages)) is not None
    }
    item: dict[str, Any] = {
        "item_id": variant.sku,
        "locale": market.locale,
        "name": name,
        "description": normalize.localized(product.description, languages),
        "url": url,
        "image_url": image,
        "price": {market.currency: current},
        "original_price": {market.currency: original},
        "in_stock": in_stock,
        "stock_count": stock_count,
        "category": categories or None,
        "groupcode": product.key or product.id,
        "sku": variant.sku,
        "brand": attribute_value(variant.attributes, rules.brand_attribute, languages),
        "color": attribute_value(variant.attributes, rules.color_attribute, languages),
        "size": attribute_value(variant.attributes, rules.size_attribute, languages),
        "product_attributes": extra or None,
        "is_status_passive": 0,
    }
    return CatalogItem(
        variant.sku,
        market.locale,
        {key: value for key, value in item.items() if value is not None},
    )


def map_product(
    product: ProductProjection,
    rules: CatalogRules,
    *,
    taxonomy: list[LocalizedString],
    inventory: dict[tuple[str, str | None], InventoryEntry],
    at: datetime,
    standalone_prices: dict[str, list[Price]] | None = None,
) -> list[CatalogItem]:
    """Every variant in every market. `inventory` is keyed by (sku, supply channel id),
    `standalone_prices` by SKU."""
    return [
        map_variant(
            product,
            variant,
            market,
            rules,
            taxonomy=taxonomy,
            inventory=inventory.get((variant.sku or "", market.supply_channel)),
            at=at,
            standalone_prices=(standalone_prices or {}).get(variant.sku or ""),
        )
        for variant in product.all_variants
        for market in rules.markets
    ]


def hidden(item_id: str, locale: str) -> dict[str, Any]:
    """Insider has no delete: an unpublished, deleted or removed variant is hidden instead."""
    return {
        "item_id": item_id,
        "locale": locale,
        "is_status_passive": 1,
        "in_stock": 0,
        "stock_count": 0,
    }
