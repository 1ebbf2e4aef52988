"""Cart activities: thin adapters over ct_insider/carts/.

- `read_cart`: one read of the cart, as a snapshot the cart's workflow compares with what
  it sent;
- `hand_off_cart_events`: the cart's events to the journey shards (the bridge's group
  commit), which deliver them exactly once, batched with every other identity's events;
- `remind_cart`: a due reminder: the cart read again (and whether an order was made from
  it), and its cart_abandoned handed off if it is still idle - one activity, not two.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Protocol

import httpx
from pydantic import BaseModel, Field, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from ct_insider.carts.events import remindable, reminder_signal
from ct_insider.carts.lines import CartRecord, CartSnapshot, snapshot
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.deadletters import DeadLetterDraft, DeadLetterStore
from ct_insider.journeys.signals import JourneySignal
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.reports import validation_reasons

log = get_logger(__name__)


class ReadCartInput(BaseModel):
    cart_id: str
    # A reminder is about to go: also ask whether an order was made from the cart (the
    # mock, and a lost OrderCreated, leave the cart Active after its order).
    check_order: bool = False


class CartRead(BaseModel):
    snapshot: CartSnapshot | None = None
    gone: bool = False  # the cart no longer exists
    ordered: bool = False  # an order was made from it (asked only with check_order)
    refused: str | None = None  # unreadable: dead-lettered with this reason
    cart_url: str | None = None  # CART_URL_TEMPLATE filled in (reminders carry it)


class RemindInput(BaseModel):
    cart_id: str
    version: int  # the cart as the workflow last saw it: a newer one is a change, not idle
    armed_version: int
    number: int  # 1-based
    due_at: datetime


class RemindResult(BaseModel):
    read: CartRead
    reminded: bool = False


class HandOffInput(BaseModel):
    cart_id: str
    signals: list[JourneySignal] = Field(default_factory=list)


class JourneyHandOff(Protocol):
    """Where cart events go: bridge.commit.ShardCommitter (stores them in the journey
    shards, raising TemporalUnavailable when Temporal did not take them)."""

    async def commit(self, signals: list[JourneySignal]) -> int: ...


class CartActivities:
    def __init__(
        self,
        ct: CommercetoolsClient,
        mapping: MappingConfig,
        hand_off: JourneyHandOff,
        letters: DeadLetterStore,
        url_template: str | None = None,
    ) -> None:
        self._ct = ct
        self._mapping = mapping
        self._hand_off = hand_off
        self._letters = letters
        self._url_template = url_template

    @activity.defn
    async def read_cart(self, params: ReadCartInput) -> CartRead:
        return await self._read(params)

    @activity.defn
    async def remind_cart(self, params: RemindInput) -> RemindResult:
        """Read the cart and, still idle (same version), Active with items, not ordered,
        hand its reminder to the shards. A retry reads again: the reminder's id names the
        inactivity and its number, so the shards take it once whatever the attempts did."""
        read = await self._read(ReadCartInput(cart_id=params.cart_id, check_order=True))
        snap = read.snapshot
        if snap is None or read.ordered or snap.version != params.version or not remindable(snap):
            return RemindResult(read=read)
        signal = reminder_signal(
            snap,
            armed_version=params.armed_version,
            number=params.number,
            due_at=params.due_at,
            cart_url=read.cart_url,
        )
        await self._hand_off_signals(HandOffInput(cart_id=params.cart_id, signals=[signal]))
        return RemindResult(read=read, reminded=True)

    async def _read(self, params: ReadCartInput) -> CartRead:
        try:
            raw = await self._ct.get_by_id("carts", params.cart_id)
            if raw is None:
                return CartRead(gone=True)
            try:
                snap = snapshot(CartRecord.model_validate(raw), self._mapping)
            except ValidationError as exc:
                reason = f"unreadable cart: {'; '.join(validation_reasons(exc))}"
                await self._letters.put([self._letter(params.cart_id, reason)])
                log.warning("cart not followed", cart_id=params.cart_id, reason=reason)
                return CartRead(refused=reason)
            ordered = False
            if params.check_order:
                where = f"cart(id={json.dumps(params.cart_id)})"
                ordered = bool((await self._ct.page("orders", where=where, page_size=1)).results)
        except CommercetoolsError as exc:
            raise as_application_error(exc) from exc
        if snap.skipped_lines:
            log.info("cart lines not followed", cart_id=snap.cart_id, lines=snap.skipped_lines)
        url = self._url_template.replace("{cart_id}", snap.cart_id) if self._url_template else None
        return CartRead(snapshot=snap, ordered=ordered, cart_url=url)

    def _letter(self, cart_id: str, reason: str) -> DeadLetterDraft:
        run = activity.info().workflow_id or f"cart-{cart_id}"
        return DeadLetterDraft(
            entity="cart", record_id=cart_id, reasons=[reason], run=run, path="realtime"
        )

    @activity.defn
    async def hand_off_cart_events(self, params: HandOffInput) -> int:
        return await self._hand_off_signals(params)

    async def _hand_off_signals(self, params: HandOffInput) -> int:
        """At least once; the shards drop what they have seen (deterministic ids)."""
        if not params.signals:
            return 0
        try:
            await self._hand_off.commit(params.signals)
        except (CommercetoolsError, httpx.TransportError) as exc:  # (a layout read)
            raise ApplicationError(str(exc), type="Unavailable") from exc
        except Exception as exc:  # TemporalUnavailable: Temporal did not store them
            raise ApplicationError(f"{type(exc).__name__}: {exc}", type="Unavailable") from exc
        return len(params.signals)
