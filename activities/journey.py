"""Deliver a journey's batch of signals to Insider (a local activity of the journey).

A first attempt sends. A repeat - a retry after an ambiguous Insider failure, the first
delivery of a journey rebuilt on another worker after a crash, or a batch with a signal
older than the journey's quiet period - first asks Insider which of the batch's events it
already holds and sends only the rest; order events go through the delivery ledger like
every other order path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel
from temporalio import activity

from activities.base import ConnectorActivities
from activities.errors import as_application_error
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.commercetools.models import Customer
from ct_insider.insider.errors import InsiderError
from ct_insider.insider.models import Event, Identifiers, User
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal
from ct_insider.journeys.storefront import map_storefront_event
from ct_insider.logging import get_logger
from ct_insider.mapping import normalize
from ct_insider.mapping.customers import customer_uuid, map_customer
from ct_insider.sync.customers import CUSTOMER_EXPAND
from ct_insider.sync.orders import ORDER_EXPAND
from ct_insider.sync.window import parse_timestamp

log = get_logger(__name__)

DELETION_TYPES = frozenset({"CustomerDeleted", "ResourceDeleted"})


class JourneyDelivery(BaseModel):
    lane: str  # the journey workflow id
    signals: list[JourneySignal]
    # An earlier execution may have reached Insider: the workflow was rebuilt from history
    # (new worker, crash, eviction) and this is its first delivery since, or the batch holds
    # a signal old enough to have been delivered by an earlier run of the journey.
    may_repeat: bool = False


class JourneyOutcome(BaseModel):
    events: int = 0
    profiles: int = 0
    deleted: int = 0
    already_in_insider: int = 0


EventIdentity = tuple[str, str | None, str]  # name, product id, timestamp


def _identity(event: Event) -> EventIdentity:
    return (event.event_name, event.event_params.get("product_id"), event.timestamp)


class JourneyActivities(ConnectorActivities):
    @activity.defn
    async def deliver(self, params: JourneyDelivery) -> JourneyOutcome:
        retry = params.may_repeat or activity.info().attempt > 1
        try:
            return await self._deliver(params, retry)
        except (CommercetoolsError, InsiderError) as exc:
            log.error("journey delivery failed", lane=params.lane, error=str(exc))
            raise as_application_error(exc) from exc

    async def _deliver(self, params: JourneyDelivery, retry: bool) -> JourneyOutcome:
        outcome = JourneyOutcome()
        signals = params.signals
        # The current customer is read for profile changes, and for events only when the
        # uuid is not the customer id itself.
        needs_customer = [
            s.identity.customer_id
            for s in signals
            if s.identity.customer_id
            and (s.kind == "customer" or self._mapping.uuid_source != "id")
        ]
        customers = await self._customers(needs_customer)
        users: list[User] = []
        for signal in signals:
            if signal.kind == "customer" and signal.type in DELETION_TYPES:
                # What came before the deletion goes first, so the deletion is the last word.
                if users:
                    await self._upsert(users, retry, outcome)
                    users = []
                await self._forget(signal.identity.customer_id or signal.resource_id, outcome)
                continue
            if signal.kind == "customer":
                user = await self._customer_change(signal, customers, outcome)
            elif signal.kind == "storefront":
                user = self._storefront(signal, customers)
            else:
                continue
            if user is not None:
                users.append(user)
        if users:
            await self._upsert(users, retry, outcome)
        await self._order_events(params.lane, signals, retry, outcome)
        return outcome

    async def _customers(self, customer_ids: Sequence[str]) -> dict[str, Customer]:
        if not customer_ids:
            return {}
        found = await self._ct.find_in(
            "customers", customer_ids, lambda q: f"id in ({q})", expand=CUSTOMER_EXPAND
        )
        return {str(raw["id"]): Customer.model_validate(raw) for raw in found}

    def _identifiers(
        self, identity: JourneyIdentity, customers: dict[str, Customer]
    ) -> Identifiers:
        uuid = None
        if identity.customer_id:
            customer = customers.get(identity.customer_id)
            uuid = (
                customer_uuid(customer, self._mapping)
                if customer is not None
                else identity.customer_id
                if self._mapping.uuid_source == "id"
                else None
            )
        anonymous = self._mapping.orders.anonymous_identifier
        return Identifiers(
            uuid=uuid,
            email=normalize.email(identity.email),
            custom={anonymous: identity.anonymous_id} if identity.anonymous_id else None,
        )

    def _storefront(self, signal: JourneySignal, customers: dict[str, Customer]) -> User | None:
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
        identifiers = self._identifiers(signal.identity, customers)
        return User(identifiers=identifiers, events=events) if not identifiers.is_empty() else None

    async def _customer_change(
        self, signal: JourneySignal, customers: dict[str, Customer], outcome: JourneyOutcome
    ) -> User | None:
        customer_id = signal.identity.customer_id or signal.resource_id
        customer = customers.get(customer_id or "")
        if customer is None:
            log.info("customer gone before delivery", customer_id=customer_id)
            return None
        mapped = map_customer(customer, self._mapping)
        if mapped.user is None:
            log.warning("customer rejected", customer_id=customer_id, reasons=[mapped.rejection])
            return None
        if signal.type == "CustomerEmailChanged" and mapped.user.identifiers.uuid:
            await self._change_email(mapped.user.identifiers.uuid, mapped.user.identifiers.email)
        user = mapped.user
        if signal.type == "CustomerCreated":
            user = user.model_copy(
                update={
                    "events": [
                        Event(
                            event_name=self._mapping.sign_up_event,
                            timestamp=normalize.timestamp(signal.occurred_at),
                            event_params={"custom": {"channel": signal.market.channel or "web"}},
                        )
                    ]
                }
            )
        outcome.profiles += 1
        return user

    async def _change_email(self, uuid: str, email: str | None) -> None:
        """An upsert never changes an identifier: move the profile's email explicitly."""
        if email is None:
            return
        profile = await self._insider.read_profile({"uuid": uuid}, attributes=["email"])
        current = (profile or {}).get("attributes", {}).get("email")
        if current and current != email:
            await self._insider.update_identifier({"email": current}, {"email": email})

    async def _forget(self, customer_id: str | None, outcome: JourneyOutcome) -> None:
        policy = self._mapping.customer_deletion
        if customer_id is None or policy == "keep" or self._mapping.uuid_source != "id":
            # With another uuid source the deleted customer's uuid can no longer be read.
            log.info("customer deletion kept in Insider", policy=policy)
            return
        if policy == "delete":
            await self._insider.delete_user({"uuid": customer_id})
        else:
            await self._insider.anonymize_user({"uuid": customer_id})
        outcome.deleted += 1

    async def _upsert(self, users: list[User], retry: bool, outcome: JourneyOutcome) -> None:
        if retry:
            users = await self._without_stored_events(users, outcome)
        has_events = any(user.events for user in users)
        result = await self._insider.upsert_users(users, skip_hook=False, repeatable=not has_events)
        for failure in result.failures:
            log.warning("journey user refused by Insider", reasons=failure.reasons)
        refused = {failure.index for failure in result.failures}
        outcome.events += sum(
            len(user.events or []) for i, user in enumerate(users) if i not in refused
        )

    async def _without_stored_events(
        self, users: list[User], outcome: JourneyOutcome
    ) -> list[User]:
        """A previous attempt may have been stored: drop the events Insider already holds."""
        kept: list[User] = []
        for user in users:
            if not user.events:
                kept.append(user)
                continue
            stored = await self._stored_events(user)
            fresh: list[Event] = []
            for event in user.events:
                if stored[_identity(event)] > 0:
                    stored[_identity(event)] -= 1
                    outcome.already_in_insider += 1
                else:
                    fresh.append(event)
            if fresh or user.attributes:
                kept.append(user.model_copy(update={"events": fresh or None}))
        return kept

    async def _stored_events(self, user: User) -> Counter[EventIdentity]:
        events = user.events or []
        times = [parse_timestamp(e.timestamp) for e in events]
        profile = await self._insider.read_profile(
            user.identifiers.strongest(),
            attributes=["uuid"],
            events={
                "start_date": int(min(times).timestamp()) - 1,
                "end_date": int(max(times).timestamp()) + 1,
                "wanted": [
                    {"event_name": name, "params": ["product_id"]}
                    for name in sorted({e.event_name for e in events})
                ],
            },
        )
        stored: Counter[EventIdentity] = Counter()
        for name, found in ((profile or {}).get("events") or {}).items():
            for event in found:
                stored[(name, event.get("product_id"), str(event.get("created_date")))] += 1
        return stored

    async def _order_events(
        self, lane: str, signals: list[JourneySignal], retry: bool, outcome: JourneyOutcome
    ) -> None:
        if retry:
            outcome.already_in_insider += await self._orders.recover(lane)
        order_ids = [s.resource_id for s in signals if s.kind == "order" and s.resource_id]
        if order_ids:
            records = await self._ct.find_in(
                "orders", order_ids, lambda q: f"id in ({q})", expand=ORDER_EXPAND
            )
            stats = await self._orders.send_batch(records, lane=lane, skip_hook=False)
            await self._orders.finish(lane)  # a journey's marker need not outlive the batch
            outcome.events += stats.events
