"""What the bridge hands a customer's journey workflow: one normalized signal per delivery.

Signals stay small (ids, versions, a few fields): the activity fetches the current state of
a customer or order when it delivers, so histories never carry whole orders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payload

from ct_insider.insider.models import Event
from ct_insider.journeys.storefront import StorefrontEvent

# "cart": an Insider event a cart's workflow worked out (workflows/cart.py), ready to send.
SignalKind = Literal["storefront", "customer", "order", "cart"]

# The most one journey signal may weigh, measured as the shard's own payloads carry it
# (`encoded_size`: every field, defaults included). The bridge refuses a bigger one before
# accepting it, so every payload the shard writes stays well under Temporal's 2 MB by
# construction: a delivery batch of 250 signals is at most ~1 MB plus what the shard adds to
# each (a filled-in market, its flags: < 0.5 KB), the bridge's 1 MB commit windows never
# hold an oversized one (arithmetic: docs/design/realtime.md, "Budgets").
MAX_SIGNAL_BYTES = 65_536
# A window - the `deliver` signal's payload, a JSON array of signals, as the bridge's group
# commit and a shard forwarding after a reshard send it - holds at most this many signals
# and bytes (Temporal refuses payloads over 2 MB); a single larger signal still goes, alone.
MAX_SIGNALS_PER_WINDOW = 500
MAX_WINDOW_BYTES = 1_000_000


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
    """The segment signals every event carries (immutable: shards share equal markets)."""

    model_config = ConfigDict(frozen=True)

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
    occurred_at: datetime  # the sender's clock: Insider gets it as it is
    identity: JourneyIdentity
    resource_id: str | None = None
    resource_version: int | None = None
    sequence_number: int | None = None
    market: Market = Field(default_factory=Market)
    storefront: StorefrontEvent | None = None
    # A cart signal's event, mapped by ct_insider/carts/events.py (bounded: one line each).
    cart_event: Event | None = None
    # CustomerEmailChanged: the email Insider's profile holds until the change is applied.
    previous_email: str | None = None
    # A deletion: the customer's key / customerNumber / externalId as the message named them
    # (the record is gone by then): how its Insider uuid is found when `uuid_source` is not
    # the id.
    user_provided: dict[str, str] | None = None
    # Set when an operator re-drives a dead letter: `<letter key>@<letter version>`. A
    # re-drive is deduplicated by that (once per version of the letter), not by the
    # original's key, which the shard has seen (that is how the letter came to be).
    redrive_of: str | None = None
    # Set by the bridge: when it received the signal (our clock, not the sender's). How far
    # a shard's dedupe memory reaches is measured by it, never by `occurred_at`.
    received_at: AwareDatetime | None = None
    # Set by the shard: the signal may repeat a delivery Insider already took - a delivery
    # that may have sent it was cut short, or it is forgotten and the dedupe archive does
    # not cover it - so Insider is asked before sending it.
    doubt: bool = False
    # Set by the shard: it happened before what the shard's dedupe memory still reaches; its
    # delivery looks it up in the dedupe archive (ct_insider/journeys/archive.py).
    forgotten: bool = False
    # Set by the shard: its history length when it accepted the signal (0: in an earlier run).
    accepted_in: int = 0
    # Set by the shard: it came in an update, whose acceptance is stored only when the task
    # that accepted it completes (a signal is stored before any task sees it).
    accepted_by_update: bool = False
    # Set by the shard: deliveries of it that failed before sending because of a record of
    # their batch (see workflows/journey_shard: a signal that keeps failing is dead-lettered).
    failures: int = 0

    def intake_key(self) -> str:
        """What the shard's dedupe memory knows this signal by."""
        return f"redrive:{self.redrive_of}" if self.redrive_of else self.dedupe_key

    def order_key(self) -> tuple[datetime, int]:
        return (self.occurred_at, self.sequence_number or 0)

    def routing(self) -> str:
        key = self.identity.routing_key()
        if key is None:
            raise ValueError(f"signal {self.dedupe_key} names no customer, visitor or email")
        return key


def digest(text: str) -> int:
    """The 64-bit digest a shard's memory knows a key or an identity by."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def encoded_size(signal: JourneySignal) -> int:
    """What a signal weighs in the shard's payloads (the measure of MAX_SIGNAL_BYTES)."""
    return len(signal.model_dump_json().encode())


def shard_of(routing_key: str, shards: int) -> int:
    """The shard that owns an identity: stable across processes and restarts. Its digest
    is the one the shard's memory keys the identity by, so a shard can tell which of the
    identities it remembers move when the shard count changes (see layout.py)."""
    return owner_of(digest(routing_key), shards)


def owner_of(identity_digest: int, shards: int) -> int:
    """The shard that owns an identity known by its digest."""
    return identity_digest % shards


def window_part(signal: JourneySignal) -> bytes:
    """A signal as a window carries it: its JSON, fields at their defaults left out."""
    return signal.model_dump_json(exclude_defaults=True).encode()


def window_has_room(parts: int, size: int, part: bytes) -> bool:
    """Whether a window of `parts` parts and `size` bytes takes one more `part`."""
    return not parts or (parts < MAX_SIGNALS_PER_WINDOW and size + len(part) <= MAX_WINDOW_BYTES)


def window_payload(parts: Sequence[bytes]) -> Payload:
    """The `deliver` signal's payload: the parts as one JSON array."""
    return Payload(metadata={"encoding": b"json/plain"}, data=b"[" + b",".join(parts) + b"]")
