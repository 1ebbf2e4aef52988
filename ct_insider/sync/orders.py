"""Order batches: map orders to events and deliver the ones Insider has not had, once.

Every path that sends order events (backfill, delta sync, journey shards) prepares them
here: the orders are mapped, and the delivery ledger says which of their events Insider
already acknowledged. Backfill and delta then send in requests of at most
`MAX_USERS_PER_EVENT_REQUEST` users, each announced by an in-flight marker first, so that
an answer lost on the way costs at most that many profile reads to settle.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ct_insider.bounded import bounded
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.models import Customer, Order
from ct_insider.commercetools.queries import orders_holding_payments
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderError
from ct_insider.insider.held import HeldEventCheck, Sought
from ct_insider.insider.models import Identifiers, User
from ct_insider.logging import get_logger
from ct_insider.mapping import normalize
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import customer_uuid
from ct_insider.mapping.orders import MappedOrder, OrderContext, map_order
from ct_insider.replenishment.model import TimerChange
from ct_insider.replenishment.planner import OrderToPlan
from ct_insider.replenishment.service import Replenishment
from ct_insider.sync.history import HistoryMode, as_history, is_historical
from ct_insider.sync.ledger import (
    DeliveryLedger,
    InFlight,
    LedgerEntry,
    PendingEvent,
    PendingOrder,
)
from ct_insider.sync.reports import Rejection, SyncStats, validation_reasons
from ct_insider.sync.taxonomy import TaxonomyResolver

log = get_logger(__name__)

ORDER_EXPAND = ("paymentInfo.payments[*]", "discountCodes[*].discountCode")
# Users per upsert that carries order events: the most profile reads a lost answer costs.
MAX_USERS_PER_EVENT_REQUEST = 100
# People whose profiles are read at once when settling a doubt (the quota paces them).
SETTLE_CONCURRENCY = 16


async def lookup_customer_uuids(
    ct: CommercetoolsClient, customer_ids: Sequence[str], config: MappingConfig
) -> dict[str, str]:
    """customer id -> Insider uuid, for a `uuid_source` other than the id itself."""
    if config.uuid_source == "id" or not customer_ids:
        return {}
    uuids: dict[str, str] = {}
    for raw in await ct.find_in("customers", customer_ids, lambda q: f"id in ({q})"):
        uuid = customer_uuid(Customer.model_validate(raw), config)
        if uuid:
            uuids[str(raw["id"])] = uuid
    return uuids


async def lookup_registered_emails(ct: CommercetoolsClient, emails: Sequence[str]) -> set[str]:
    """Which of these emails (normalized) belong to a registered customer: one customers
    query per 100 distinct addresses. The email predicate is case-sensitive, so each is
    asked for as written and in lowercase (commercetools keeps the customer's case)."""
    asked = [
        variant
        for email in dict.fromkeys(e.strip() for e in emails if e and e.strip())
        for variant in dict.fromkeys((email, email.lower()))
    ]
    if not asked:
        return set()
    found = await ct.find_in("customers", asked, lambda q: f"email in ({q})")
    return {email for raw in found if (email := normalize.email(str(raw.get("email") or "")))}


@dataclass(frozen=True)
class PreparedOrder:
    mapped: MappedOrder
    entry: LedgerEntry
    # event key -> replenishment timer changes its delivery implies (replenishment on)
    timer_changes: Mapping[str, list[TimerChange]] = field(default_factory=dict)

    @property
    def order_id(self) -> str:
        return self.mapped.order_id

    def user(self) -> User | None:
        """The upsert of the events the ledger does not list; None when all were delivered."""
        return self.mapped.user(skip=self.entry.delivered)

    def pending(self) -> PendingOrder:
        """What verification needs to recognise this order's events in a profile."""
        assert self.mapped.identifiers is not None
        delivered = self.entry.delivered
        return PendingOrder(
            identifiers=self.mapped.identifiers.to_json_dict(),
            events=[
                PendingEvent(
                    key=keyed.key,
                    event_name=keyed.event.event_name,
                    timestamp=keyed.event.timestamp,
                    event_group_id=keyed.event.event_params.get("event_group_id"),
                    product_id=keyed.event.event_params.get("product_id"),
                    timer_changes=list(self.timer_changes.get(keyed.key, [])),
                )
                for keyed in self.mapped.events
            ],
            sending=[keyed.key for keyed in self.mapped.events if keyed.key not in delivered],
        )


@dataclass
class PreparedOrders:
    orders: dict[str, PreparedOrder] = field(default_factory=dict)  # mappable ones, by id
    stats: SyncStats = field(default_factory=SyncStats)  # rejections and warnings so far


def _sought(event: PendingEvent) -> Sought:
    return Sought(
        name=event.event_name,
        timestamp=event.timestamp,
        group_id=event.event_group_id,
        product_id=event.product_id,
    )


class OrderEventSender:
    """One instance per worker; shared by backfill, delta sync and the journey shards."""

    def __init__(
        self,
        ct: CommercetoolsClient,
        insider: InsiderClient,
        ledger: DeliveryLedger,
        taxonomy: TaxonomyResolver,
        config: MappingConfig,
        replenishment: Replenishment | None = None,
    ) -> None:
        self._ct = ct
        self._insider = insider
        self._ledger = ledger
        self._taxonomy = taxonomy
        self._config = config
        self._held = HeldEventCheck(insider)
        self._replenishment = replenishment

    @property
    def ledger(self) -> DeliveryLedger:
        return self._ledger

    async def _context(self, orders: list[Order]) -> OrderContext:
        product_ids = [line.product_id for o in orders for line in o.line_items if line.product_id]
        customer_ids = [o.customer_id for o in orders if o.customer_id]
        guest_emails = [o.customer_email for o in orders if o.customer_email and not o.customer_id]
        return OrderContext(
            customer_uuids=await lookup_customer_uuids(self._ct, customer_ids, self._config),
            taxonomies=await self._taxonomy.taxonomies(product_ids),
            registered_emails=await lookup_registered_emails(self._ct, guest_emails),
        )

    def _parse(self, records: list[dict[str, Any]], stats: SyncStats) -> list[Order]:
        orders = []
        for raw in records:
            try:
                orders.append(Order.model_validate(raw))
            except ValidationError as exc:
                record_id = str(raw.get("id", "?"))
                reasons = validation_reasons(exc)
                stats.reject(Rejection(record_id=record_id, stage="mapping", reasons=reasons))
                log.warning("order rejected", order_id=record_id, reasons=reasons)
        return orders

    async def prepare(self, records: list[dict[str, Any]]) -> PreparedOrders:
        """Map orders and look up what the ledger says was delivered; refused orders are in
        `stats.rejections`."""
        prepared = PreparedOrders(stats=SyncStats(processed=len(records)))
        orders = self._parse(records, prepared.stats)
        context = await self._context(orders)
        mapped_orders: list[MappedOrder] = []
        parsed: dict[str, Order] = {}
        for order in orders:
            mapped = map_order(order, self._config, context)
            if mapped.warnings:
                prepared.stats.warnings += len(mapped.warnings)
                log.warning("order values dropped", order_id=order.id, warnings=mapped.warnings)
            if mapped.rejection:
                prepared.stats.reject(
                    Rejection(record_id=order.id, stage="mapping", reasons=[mapped.rejection])
                )
                log.warning("order rejected", order_id=order.id, reasons=[mapped.rejection])
                continue
            mapped_orders.append(mapped)
            parsed[mapped.order_id] = order
        entries = await self._ledger.entries([m.order_id for m in mapped_orders])
        timers: dict[str, dict[str, list[TimerChange]]] = {}
        if self._replenishment is not None:
            timers = await self._replenishment.plan(
                [
                    OrderToPlan(parsed[m.order_id], m, entries[m.order_id].delivered)
                    for m in mapped_orders
                ]
            )
        for mapped in mapped_orders:
            prepared.orders[mapped.order_id] = PreparedOrder(
                mapped, entries[mapped.order_id], timers.get(mapped.order_id, {})
            )
        return prepared

    async def arm(self, changes: Sequence[TimerChange]) -> None:
        """Replenishment timers for events now known to be in Insider (every path calls
        this before the ledger lists them, so a crash in between re-arms, idempotently)."""
        if self._replenishment is not None and changes:
            await self._replenishment.delivered(changes)

    async def record(
        self, orders: dict[str, PreparedOrder], delivered: dict[str, set[str]]
    ) -> None:
        """Arm replenishment timers of what Insider acknowledged, and add it to the ledger."""
        await self.arm(
            [
                change
                for oid, keys in delivered.items()
                for key in sorted(keys)
                for change in orders[oid].timer_changes.get(key, [])
            ]
        )
        await self._ledger.record({oid: orders[oid].entry for oid in delivered}, delivered)

    async def send_batch(
        self,
        records: list[dict[str, Any]],
        *,
        lane: str,
        skip_hook: bool,
        history: HistoryMode = "events",
    ) -> SyncStats:
        """Map a batch of orders and deliver each event not yet in the ledger. Orders older
        than the live window never start journeys (skip_hook), and in `history="attributes"`
        send their profile only (ct_insider/sync/history.py)."""
        prepared = await self.prepare(records)
        stats = prepared.stats
        window = timedelta(hours=self._config.orders.live_window_hours)
        now = datetime.now(UTC)
        live: list[tuple[PreparedOrder, User]] = []
        historical: list[tuple[PreparedOrder, User]] = []
        profiles: list[tuple[str, User]] = []  # (order id, its profile alone)
        for order in prepared.orders.values():
            user = order.user()
            if user is None:
                stats.skipped += 1  # every event of this order was delivered before
            elif not is_historical(user, now, window):
                live.append((order, user))
            else:
                stats.historical += 1
                if history == "events":
                    historical.append((order, user))
                elif (profile := as_history(user, history)) is not None:
                    profiles.append((order.order_id, profile))
                else:
                    stats.skipped += 1  # a profile with nothing of its own to send
        for batch, hook in ((live, skip_hook), (historical, True)):
            for start in range(0, len(batch), MAX_USERS_PER_EVENT_REQUEST):
                await self._send_request(
                    batch[start : start + MAX_USERS_PER_EVENT_REQUEST], lane, hook, stats
                )
        if profiles:
            await self._send_profiles(profiles, stats)
        return stats

    async def _send_profiles(self, profiles: list[tuple[str, User]], stats: SyncStats) -> None:
        """Historical orders' profiles alone: no event, so nothing for the ledger, and safe
        to repeat."""
        result = await self._insider.upsert_users(
            [user for _, user in profiles], skip_hook=True, repeatable=True
        )
        for failure in result.failures:
            order_id = profiles[failure.index][0]
            stats.reject(Rejection(record_id=order_id, stage="insider", reasons=failure.reasons))
            log.warning(
                "order profile refused by Insider", order_id=order_id, reasons=failure.reasons
            )
        stats.sent += len(profiles) - len(result.failures)

    async def _send_request(
        self,
        sendable: list[tuple[PreparedOrder, User]],
        lane: str,
        skip_hook: bool,
        stats: SyncStats,
    ) -> None:
        in_flight = InFlight(orders={order.order_id: order.pending() for order, _ in sendable})
        await self._ledger.mark_in_flight(lane, in_flight)
        result = await self._insider.upsert_users(
            [user for _, user in sendable], skip_hook=skip_hook, repeatable=False
        )
        refused = {failure.index: failure.reasons for failure in result.failures}
        delivered: dict[str, set[str]] = {}
        for index, (order, _) in enumerate(sendable):
            if index in refused:
                # Treated as not stored (Insider validates a user before storing it); the
                # order stays out of the ledger, so a later run tries it again.
                stats.reject(
                    Rejection(record_id=order.order_id, stage="insider", reasons=refused[index])
                )
                log.warning(
                    "order refused by Insider", order_id=order.order_id, reasons=refused[index]
                )
                continue
            delivered[order.order_id] = set(in_flight.orders[order.order_id].sending)
        await self.record({order.order_id: order for order, _ in sendable}, delivered)
        stats.sent += len(delivered)
        stats.events += sum(len(keys) for keys in delivered.values())

    async def send_for_payments(
        self,
        payments: list[dict[str, Any]],
        *,
        lane: str,
        skip_hook: bool,
        history: HistoryMode = "events",
    ) -> SyncStats:
        """Payments changed (e.g. a refund added) without touching their orders'
        lastModifiedAt: send the new events of the orders that hold them."""
        records = await orders_holding_payments(
            self._ct, [str(p["id"]) for p in payments], expand=ORDER_EXPAND
        )
        if not records:
            return SyncStats()
        return await self.send_batch(records, lane=lane, skip_hook=skip_hook, history=history)

    async def recover(self, lane: str, on_progress: Callable[[], None] | None = None) -> int:
        """After a crash or an ambiguous failure: settle the request that was in flight.

        One profile read per person in it (paced to the profile quota). What a read
        confirms goes to the ledger at once and leaves the marker, so a later attempt never
        reads it again; a read that fails is tried again by that later attempt, after the
        others were settled. Events not found stay out of the ledger and go out when the
        batch is read again. Returns how many events were found in Insider.
        """
        marker = await self._ledger.in_flight(lane)
        if marker is None:
            return 0
        await asyncio.sleep(self._insider.settle_grace_seconds)
        entries = await self._ledger.entries(list(marker.orders))
        by_person: dict[str, list[str]] = defaultdict(list)
        for order_id, pending in marker.orders.items():
            if pending.open_events(entries[order_id].delivered):
                person = Identifiers.model_validate(pending.identifiers).strongest()
                by_person[json.dumps(person, sort_keys=True)].append(order_id)
        remaining = dict(marker.orders)
        found = 0
        failure: InsiderError | None = None
        confirmed: dict[str, set[str]] = {}

        async def save_progress() -> None:
            await self.arm(
                [
                    change
                    for oid, keys in confirmed.items()
                    for event in remaining[oid].events
                    if event.key in keys
                    for change in event.timer_changes
                ]
            )
            await self._ledger.record({oid: entries[oid] for oid in confirmed}, confirmed)
            for oid in confirmed:
                del remaining[oid]
            confirmed.clear()
            await self._ledger.mark_in_flight(lane, InFlight(orders=remaining))
            if on_progress is not None:
                on_progress()

        async def settle(order_ids: list[str]) -> tuple[list[str], list[set[str]]]:
            pending = [(remaining[oid], entries[oid].delivered) for oid in order_ids]
            return order_ids, await self._confirmed(pending)

        work = [settle(ids) for ids in by_person.values()]
        async with bounded(SETTLE_CONCURRENCY, work) as outcomes:
            for done, outcome in enumerate(outcomes, 1):
                try:
                    order_ids, keys = await outcome
                except InsiderError as exc:
                    failure = exc
                    log.warning("in-flight verification read failed", lane=lane, error=str(exc))
                    continue
                confirmed.update(zip(order_ids, keys, strict=True))
                found += sum(len(k) for k in keys)
                if done % SETTLE_CONCURRENCY == 0:
                    await save_progress()
        await save_progress()
        if failure is not None:
            raise failure  # retryable: the next attempt reads only what is left
        await self._ledger.clear_in_flight(lane)
        log.info(
            "in-flight request settled",
            lane=lane,
            orders=len(marker.orders),
            events_found_in_insider=found,
        )
        return found

    async def finish(self, lane: str) -> None:
        """The lane's last batch is in the ledger: its marker has nothing left to settle."""
        await self._ledger.clear_in_flight(lane)

    async def _confirmed(self, orders: list[tuple[PendingOrder, frozenset[str]]]) -> list[set[str]]:
        """The open event keys of one person's orders that the profile holds (one read)."""
        sought: list[tuple[int, PendingEvent]] = []
        known: list[Sought] = []
        for position, (pending, delivered) in enumerate(orders):
            for event in pending.events:
                if event.key in delivered or event.key not in pending.sending:
                    known.append(_sought(event))
                else:
                    sought.append((position, event))
        identifiers = Identifiers.model_validate(orders[0][0].identifiers)
        held = await self._held.held(identifiers, [_sought(e) for _, e in sought], known)
        confirmed: list[set[str]] = [set() for _ in orders]
        for (position, event), is_held in zip(sought, held, strict=True):
            if is_held:
                confirmed[position].add(event.key)
        return confirmed
