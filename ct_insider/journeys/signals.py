"""What the bridge hands a customer's journey workflow: one normalized signal per delivery.

Signals stay small (ids, versions, a few fields): the activity fetches the current state of
a customer or order when it delivers, so histories never carry whole orders.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ct_insider.journeys.storefront import StorefrontEvent

SignalKind = Literal["storefront", "customer", "order"]


class JourneyIdentity(BaseModel):
    customer_id: str | None = None
    anonymous_id: str | None = None
    email: str | None = None

    def routing_key(self) -> str | None:
        """Which journey workflow owns this identity: the customer if known, else the
        visitor, else the email (hashed: workflow ids are visible in the Temporal UI)."""
        if self.customer_id:
            return f"customer-{self.customer_id}"
        if self.anonymous_id:
            return f"anonymous-{self.anonymous_id}"
        if self.email:
            digest = hashlib.sha256(self.email.strip().lower().encode()).hexdigest()[:32]
            return f"email-{digest}"
        return None


class Market(BaseModel):
    """The segment signals every event carries."""

    channel: str | None = None
    currency: str | None = None
    language: str | None = None  # Insider form, e.g. en_US
    country: str | None = None
    store: str | None = None

    def filled_from(self, fallback: Market) -> Market:
        return Market(
            **{name: getattr(self, name) or getattr(fallback, name) for name in Market.model_fields}
        )


class JourneySignal(BaseModel):
    # Idempotency key: the storefront event id, the commercetools message id, or
    # "<resource id>@<version>" for a change notification.
    dedupe_key: str
    kind: SignalKind
    type: str  # the storefront event type or the commercetools message type
    occurred_at: datetime
    identity: JourneyIdentity
    resource_id: str | None = None
    resource_version: int | None = None
    sequence_number: int | None = None
    market: Market = Field(default_factory=Market)
    storefront: StorefrontEvent | None = None

    def order_key(self) -> tuple[datetime, int]:
        return (self.occurred_at, self.sequence_number or 0)
