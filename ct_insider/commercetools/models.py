"""Typed commercetools resources. Unknown fields are ignored so API additions never break us."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

LocalizedString = dict[str, str]


class CtModel(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


class Reference(CtModel):
    type_id: str | None = None
    id: str
    obj: dict[str, Any] | None = None


class KeyReference(CtModel):
    type_id: str | None = None
    key: str


class Money(CtModel):
    type: str = "centPrecision"
    currency_code: str
    cent_amount: int
    fraction_digits: int = 2

    @property
    def amount(self) -> Decimal:
        """Exact decimal amount: centAmount / 10^fractionDigits, no float drift."""
        return Decimal(self.cent_amount).scaleb(-self.fraction_digits)


class CustomFields(CtModel):
    type: Reference | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class Address(CtModel):
    id: str | None = None
    key: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    street_name: str | None = None
    street_number: str | None = None
    postal_code: str | None = None
    city: str | None = None
    region: str | None = None
    state: str | None = None
    country: str
    phone: str | None = None
    mobile: str | None = None
    email: str | None = None


class Customer(CtModel):
    id: str
    version: int
    key: str | None = None
    customer_number: str | None = None
    external_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    date_of_birth: str | None = None
    company_name: str | None = None
    addresses: list[Address] = Field(default_factory=list)
    default_shipping_address_id: str | None = None
    default_billing_address_id: str | None = None
    is_email_verified: bool = False
    customer_group: Reference | None = None
    custom: CustomFields | None = None
    locale: str | None = None
    stores: list[KeyReference] = Field(default_factory=list)
    created_at: datetime
    last_modified_at: datetime


class Image(CtModel):
    url: str
    label: str | None = None


class Attribute(CtModel):
    name: str
    value: Any = None


class DiscountedPrice(CtModel):
    value: Money
    discount: Reference | None = None


class Price(CtModel):
    id: str | None = None
    value: Money
    country: str | None = None
    customer_group: Reference | None = None
    channel: Reference | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    discounted: DiscountedPrice | None = None


class ChannelAvailability(CtModel):
    is_on_stock: bool | None = None
    available_quantity: int | None = None


class Availability(CtModel):
    is_on_stock: bool | None = None
    available_quantity: int | None = None
    restockable_in_days: int | None = None
    channels: dict[str, ChannelAvailability] = Field(default_factory=dict)


class ProductVariant(CtModel):
    id: int
    sku: str | None = None
    key: str | None = None
    prices: list[Price] = Field(default_factory=list)
    price: Price | None = None
    attributes: list[Attribute] = Field(default_factory=list)
    images: list[Image] = Field(default_factory=list)
    availability: Availability | None = None


class ProductProjection(CtModel):
    id: str
    version: int
    key: str | None = None
    product_type: Reference | None = None
    name: LocalizedString
    description: LocalizedString | None = None
    slug: LocalizedString
    categories: list[Reference] = Field(default_factory=list)
    master_variant: ProductVariant
    variants: list[ProductVariant] = Field(default_factory=list)
    published: bool = True
    # "Embedded" (prices on the variants) or "Standalone" (StandalonePrice resources by SKU)
    price_mode: str | None = None
    created_at: datetime | None = None
    last_modified_at: datetime | None = None

    @property
    def all_variants(self) -> list[ProductVariant]:
        return [self.master_variant, *self.variants]


class Category(CtModel):
    id: str
    version: int
    key: str | None = None
    name: LocalizedString
    slug: LocalizedString
    parent: Reference | None = None
    ancestors: list[Reference] = Field(default_factory=list)
    order_hint: str | None = None
    external_id: str | None = None
    last_modified_at: datetime | None = None


class LineItemVariant(CtModel):
    id: int | None = None
    sku: str | None = None
    images: list[Image] = Field(default_factory=list)
    attributes: list[Attribute] = Field(default_factory=list)


class DiscountedLineItemPortion(CtModel):
    discounted_amount: Money


class DiscountedLineItemPrice(CtModel):
    value: Money


class DiscountedPricePerQuantity(CtModel):
    quantity: int
    discounted_price: DiscountedLineItemPrice


class LineItem(CtModel):
    id: str
    product_id: str | None = None
    product_key: str | None = None
    name: LocalizedString
    variant: LineItemVariant
    price: Price
    quantity: int
    total_price: Money | None = None
    discounted_price_per_quantity: list[DiscountedPricePerQuantity] = Field(default_factory=list)
    product_slug: LocalizedString | None = None


class CustomLineItem(CtModel):
    id: str
    name: LocalizedString
    money: Money
    slug: str | None = None
    quantity: int
    total_price: Money | None = None
    discounted_price_per_quantity: list[DiscountedPricePerQuantity] = Field(default_factory=list)


class TaxedPrice(CtModel):
    total_net: Money
    total_gross: Money
    total_tax: Money | None = None


class DiscountCodeInfo(CtModel):
    discount_code: Reference
    state: str | None = None


class ShippingInfo(CtModel):
    shipping_method_name: str | None = None
    price: Money | None = None


class ReturnItem(CtModel):
    id: str
    quantity: int
    line_item_id: str | None = None
    custom_line_item_id: str | None = None
    shipment_state: str | None = None
    payment_state: str | None = None
    last_modified_at: datetime | None = None


class ReturnInfo(CtModel):
    items: list[ReturnItem] = Field(default_factory=list)
    return_tracking_id: str | None = None
    return_date: datetime | None = None


class PaymentInfo(CtModel):
    payments: list[Reference] = Field(default_factory=list)


class Order(CtModel):
    id: str
    version: int
    order_number: str | None = None
    customer_id: str | None = None
    customer_email: str | None = None
    anonymous_id: str | None = None
    customer_group: Reference | None = None
    store: KeyReference | None = None
    country: str | None = None
    locale: str | None = None
    line_items: list[LineItem] = Field(default_factory=list)
    custom_line_items: list[CustomLineItem] = Field(default_factory=list)
    total_price: Money
    taxed_price: TaxedPrice | None = None
    discount_codes: list[DiscountCodeInfo] = Field(default_factory=list)
    payment_info: PaymentInfo | None = None
    shipping_info: ShippingInfo | None = None
    order_state: str | None = None
    payment_state: str | None = None
    shipment_state: str | None = None
    return_info: list[ReturnInfo] = Field(default_factory=list)
    shipping_address: Address | None = None
    billing_address: Address | None = None
    custom: CustomFields | None = None
    origin: str | None = None
    completed_at: datetime | None = None
    created_at: datetime
    last_modified_at: datetime


class Transaction(CtModel):
    id: str
    type: Literal["Authorization", "CancelAuthorization", "Charge", "Refund", "Chargeback"]
    amount: Money
    state: Literal["Initial", "Pending", "Success", "Failure"] = "Initial"
    timestamp: datetime | None = None
    interaction_id: str | None = None


class Payment(CtModel):
    id: str
    version: int
    key: str | None = None
    customer: Reference | None = None
    amount_planned: Money
    transactions: list[Transaction] = Field(default_factory=list)
    created_at: datetime | None = None
    last_modified_at: datetime | None = None


class StandalonePrice(Price):
    sku: str
    active: bool = True


class InventoryEntry(CtModel):
    id: str
    version: int
    sku: str
    supply_channel: Reference | None = None
    quantity_on_stock: int
    available_quantity: int
    restockable_in_days: int | None = None
    last_modified_at: datetime | None = None


class PayloadNotIncluded(CtModel):
    reason: str
    payload_type: str


class UserProvidedIdentifiers(CtModel):
    key: str | None = None
    external_id: str | None = None
    order_number: str | None = None
    customer_number: str | None = None
    sku: str | None = None
    slug: LocalizedString | None = None


class MessageDelivery(CtModel):
    """A Platform-format subscription delivery of a Message (`notificationType: Message`).

    The message-type-specific fields (e.g. `order` for OrderCreated) stay in
    `model_extra`, read through `payload()`; `payloadNotIncluded` marks an oversize one.
    """

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    notification_type: Literal["Message"] = "Message"
    project_key: str
    id: str
    version: int = 1
    sequence_number: int
    resource: Reference
    resource_version: int
    resource_user_provided_identifiers: UserProvidedIdentifiers | None = None
    type: str
    created_at: datetime
    last_modified_at: datetime | None = None
    payload_not_included: PayloadNotIncluded | None = None

    def payload(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ChangeDelivery(CtModel):
    """A Platform-format change notification: ResourceCreated / ResourceUpdated / ResourceDeleted."""

    notification_type: Literal["ResourceCreated", "ResourceUpdated", "ResourceDeleted"]
    project_key: str
    resource: Reference
    resource_user_provided_identifiers: UserProvidedIdentifiers | None = None
    version: int
    old_version: int | None = None
    modified_at: datetime
