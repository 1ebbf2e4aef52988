"""What a batch of journey signals becomes in Insider: a pure function, no I/O.

The shard's delivery reads what the signals need (customers, orders and their ledger
entries) and hands it here as a `DeliveryContext`; the plan says what to send:

- one Insider user per identity, its events in the order they happened (storefront events,
  sign-up, purchases, refunds, cancellations) and its profile attributes, so that one upsert
  carries many people while each person's events keep their order;
- identity operations first (an email change moves Insider's email identifier, which an
  upsert never changes); deletions last, after everything that happened before them;
  anything of a deleted customer that happened after the deletion is dropped;
- what cannot be mapped, with the reason, for the dead-letter store.

A person whose signals name conflicting identifiers (an order placed with the old email
and a profile with the new one) gets a second user in a later wave, sent after the first.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from ct_insider.commercetools.models import Customer
from ct_insider.insider.models import Attributes, Event, Identifiers, User
from ct_insider.journeys.intake import DELETION_TYPES
from ct_insider.journeys.signals import JourneySignal
from ct_insider.journeys.storefront import map_storefront_event
from ct_insider.mapping import normalize
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import map_customer, usable_uuid
from ct_insider.mapping.identifiers import resolve_identifiers
from ct_insider.replenishment.model import TimerChange
from ct_insider.sync.orders import PreparedOrder


class PlannedEvent(BaseModel):
    event: Event
    signal: int  # index of the signal it came from, in the batch
    order_id: str | None = None  # order events: the ledger entry and key it is recorded under
    ledger_key: str | None = None
    # Replenishment timer changes its delivery implies (applied with the ledger entry).
    timer_changes: list[TimerChange] = Field(default_factory=list)


class PlannedUser(BaseModel):
    """One person's share of an upsert, with where each part came from."""

    identity: str  # the routing key
    identifiers: Identifiers
    attributes: Attributes | None = None
    not_append: bool | None = None
    events: list[PlannedEvent] = Field(default_factory=list)
    signals: list[int] = Field(default_factory=list)  # every signal that contributed
    # Order events of the same orders delivered before (verification counts them out).
    delivered_before: list[Event] = Field(default_factory=list)

    def user(self) -> User:
        return User(
            identifiers=self.identifiers,
            attributes=self.attributes,
            events=[planned.event for planned in self.events] or None,
            not_append=self.not_append,
        )


class EmailChange(BaseModel):
    uuid: str
    old: str | None  # None: the message did not say; the profile is read for it
    new: str
    signal: int


class Deletion(BaseModel):
    identity: str
    customer_id: str
    uuid: str  # the customer's Insider uuid (per `uuid_source`)
    signal: int


class Refusal(BaseModel):
    signal: int
    entity: str
    record_id: str
    reasons: list[str]


class DeliveryPlan(BaseModel):
    email_changes: list[EmailChange] = Field(default_factory=list)
    waves: list[list[PlannedUser]] = Field(default_factory=list)
    deletions: list[Deletion] = Field(default_factory=list)
    refused: list[Refusal] = Field(default_factory=list)
    # Signals with nothing to send: an order whose events were all delivered, a customer
    # deleted before their change could be read, a signal after its customer's deletion.
    nothing_to_send: list[int] = Field(default_factory=list)


@dataclass(frozen=True)
class DeliveryContext:
    config: MappingConfig
    customers: Mapping[str, Customer] = field(default_factory=dict)  # current state, by id
    customer_uuids: Mapping[str, str] = field(default_factory=dict)
    orders: Mapping[str, PreparedOrder] = field(default_factory=dict)  # by order id
    order_refusals: Mapping[str, list[str]] = field(default_factory=dict)
    customer_refusals: Mapping[str, list[str]] = field(default_factory=dict)


def _compatible(first: Identifiers, second: Identifiers) -> bool:
    for name in ("uuid", "email", "phone_number"):
        a, b = getattr(first, name), getattr(second, name)
        if a and b and a != b:
            return False
    custom_a, custom_b = first.custom or {}, second.custom or {}
    return all(custom_a[k] == v for k, v in custom_b.items() if k in custom_a)


def _merged_identifiers(first: Identifiers, second: Identifiers) -> Identifiers:
    custom = {**(second.custom or {}), **(first.custom or {})}
    return Identifiers(
        uuid=first.uuid or second.uuid,
        email=first.email or second.email,
        phone_number=first.phone_number or second.phone_number,
        custom=custom or None,
    )


def _merged_attributes(first: Attributes | None, second: Attributes | None) -> Attributes | None:
    if first is None or second is None:
        return first or second
    later = second.model_dump(exclude_none=True)
    return first.model_copy(update=later)


class _Planner:
    def __init__(
        self, signals: list[JourneySignal], context: DeliveryContext, skip: Collection[int]
    ) -> None:
        self.signals = signals
        self.context = context
        self.skip = skip
        self.plan = DeliveryPlan()
        self.deleted: set[str] = set()
        self.orders_planned: set[str] = set()
        self.latest: dict[str, tuple[int, PlannedUser]] = {}  # identity -> its latest user

    def _place(self, user: PlannedUser) -> None:
        """With this person's user in the latest wave that has one, if their identifiers
        agree; else in the wave after it (so it is sent after it)."""
        waves = self.plan.waves
        placed = self.latest.get(user.identity)
        target = 0
        if placed is not None:
            wave, mine = placed
            if _compatible(mine.identifiers, user.identifiers):
                mine.identifiers = _merged_identifiers(mine.identifiers, user.identifiers)
                mine.attributes = _merged_attributes(mine.attributes, user.attributes)
                mine.not_append = mine.not_append or user.not_append
                mine.events.extend(user.events)
                mine.signals.extend(user.signals)
                mine.delivered_before.extend(user.delivered_before)
                return
            target = wave + 1
        if target == len(waves):
            waves.append([])
        waves[target].append(user)
        self.latest[user.identity] = (target, user)

    def _refuse(self, index: int, entity: str, record_id: str, reasons: list[str]) -> None:
        self.plan.refused.append(
            Refusal(signal=index, entity=entity, record_id=record_id, reasons=reasons)
        )

    def build(self) -> DeliveryPlan:
        for index, signal in enumerate(self.signals):
            if index in self.skip:
                continue
            identity = signal.routing()
            if identity in self.deleted:
                self.plan.nothing_to_send.append(index)
                continue
            try:
                if signal.kind == "storefront":
                    self._storefront(index, signal, identity)
                elif signal.kind == "order":
                    self._order(index, signal, identity)
                elif signal.kind == "cart":
                    self._cart(index, signal, identity)
                elif signal.type in DELETION_TYPES:
                    self._deletion(index, signal, identity)
                else:
                    self._customer(index, signal, identity)
            except Exception as exc:  # a record the mapping cannot take must not stop the rest
                self._refuse(
                    index,
                    f"{signal.kind}-signal",
                    signal.dedupe_key,
                    [f"mapping failed: {type(exc).__name__}: {exc}"],
                )
        return self.plan

    def _storefront(self, index: int, signal: JourneySignal, identity: str) -> None:
        assert signal.storefront is not None
        market = signal.market
        custom = {
            key: value
            for key, value in {
                "channel": market.channel or "web",
                "country": market.country,
                "store": market.store,
            }.items()
            if value
        }
        events = map_storefront_event(
            signal.storefront, currency=market.currency, language=market.language, custom=custom
        )
        self._place_events(
            index, signal, identity, events, ("storefront-event", signal.storefront.event_id)
        )

    def _cart(self, index: int, signal: JourneySignal, identity: str) -> None:
        assert signal.cart_event is not None
        self._place_events(
            index, signal, identity, [signal.cart_event], ("cart-event", signal.dedupe_key)
        )

    def _place_events(
        self,
        index: int,
        signal: JourneySignal,
        identity: str,
        events: Sequence[Event],
        record: tuple[str, str],
    ) -> None:
        """Plan `events` for the signal's person, or refuse the signal (`record`: its kind
        and id, as the dead letter names them) when it names nobody Insider can tell."""
        identifiers = resolve_identifiers(
            self.context.config,
            customer_id=signal.identity.customer_id,
            email=signal.identity.email,
            anonymous_id=signal.identity.anonymous_id,
            customer_uuids=self.context.customer_uuids,
        )
        if identifiers.is_empty():
            kind, record_id = record
            self._refuse(
                index,
                kind,
                record_id,
                [
                    "no usable identifier: the customer has no uuid and there is no valid "
                    "email or anonymous id"
                ],
            )
            return
        self._place(
            PlannedUser(
                identity=identity,
                identifiers=identifiers,
                events=[PlannedEvent(event=e, signal=index) for e in events],
                signals=[index],
            ),
        )

    def _order(self, index: int, signal: JourneySignal, identity: str) -> None:
        order_id = signal.resource_id or ""
        if order_id in self.context.order_refusals:
            self._refuse(index, "order", order_id, self.context.order_refusals[order_id])
            return
        prepared = self.context.orders.get(order_id)
        if prepared is None or order_id in self.orders_planned:
            self.plan.nothing_to_send.append(index)  # gone, or planned by an earlier signal
            return
        self.orders_planned.add(order_id)
        user = prepared.user()
        if user is None:
            self.plan.nothing_to_send.append(index)  # every event was delivered before
            return
        delivered = prepared.entry.delivered
        self._place(
            PlannedUser(
                identity=identity,
                identifiers=user.identifiers,
                attributes=user.attributes,
                events=[
                    PlannedEvent(
                        event=keyed.event,
                        signal=index,
                        order_id=order_id,
                        ledger_key=keyed.key,
                        timer_changes=list(prepared.timer_changes.get(keyed.key, [])),
                    )
                    for keyed in prepared.mapped.events
                    if keyed.key not in delivered
                ],
                signals=[index],
                delivered_before=[k.event for k in prepared.mapped.events if k.key in delivered],
            ),
        )

    def _deletion(self, index: int, signal: JourneySignal, identity: str) -> None:
        customer_id = signal.identity.customer_id or signal.resource_id
        self.deleted.add(identity)
        if customer_id is None:
            self.plan.nothing_to_send.append(index)
            return
        source = self.context.config.uuid_source
        uuid = usable_uuid(
            customer_id if source == "id" else (signal.user_provided or {}).get(source)
        )
        if uuid is None and self.context.config.customer_deletion != "keep":
            # Never silently kept: parked for an operator, who can act on it in InOne.
            self._refuse(
                index,
                "customer",
                customer_id,
                [
                    f"deletion names no {source} (resourceUserProvidedIdentifiers), and the "
                    "customer record is gone: its Insider user cannot be found by uuid"
                ],
            )
            return
        self.plan.deletions.append(
            Deletion(identity=identity, customer_id=customer_id, uuid=uuid or "", signal=index)
        )

    def _customer(self, index: int, signal: JourneySignal, identity: str) -> None:
        customer_id = signal.identity.customer_id or signal.resource_id or ""
        if customer_id in self.context.customer_refusals:
            self._refuse(
                index, "customer", customer_id, self.context.customer_refusals[customer_id]
            )
            return
        customer = self.context.customers.get(customer_id)
        if customer is None:
            self.plan.nothing_to_send.append(index)  # deleted since: its deletion follows
            return
        mapped = map_customer(customer, self.context.config)
        if mapped.user is None:
            reason = mapped.rejection or "not mappable"
            self._refuse(index, "customer", customer_id, [reason])
            return
        user = mapped.user
        if (
            signal.type == "CustomerEmailChanged"
            and user.identifiers.uuid
            and user.identifiers.email
        ):
            self.plan.email_changes.append(
                EmailChange(
                    uuid=user.identifiers.uuid,
                    old=normalize.email(signal.previous_email),
                    new=user.identifiers.email,
                    signal=index,
                )
            )
        events: list[PlannedEvent] = []
        if signal.type == "CustomerCreated":
            custom: dict[str, Any] = {
                "channel": signal.market.channel or "web",
                "event_id": signal.dedupe_key,
            }
            sign_up = Event(
                event_name=self.context.config.sign_up_event,
                timestamp=normalize.timestamp(signal.occurred_at),
                event_params={"custom": custom},
            )
            events.append(PlannedEvent(event=sign_up, signal=index))
        self._place(
            PlannedUser(
                identity=identity,
                identifiers=user.identifiers,
                attributes=user.attributes,
                not_append=user.not_append,
                events=events,
                signals=[index],
            ),
        )


def plan_delivery(
    signals: list[JourneySignal], context: DeliveryContext, skip: Collection[int] = ()
) -> DeliveryPlan:
    """`signals` in the order they happened, markets filled in (see intake.take_batch); the
    signals at `skip` are left out (duplicates the dedupe archive recognised)."""
    return _Planner(signals, context, skip).build()
