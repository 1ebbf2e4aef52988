"""Order batches: map orders to events and deliver the ones Insider has not had, once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.models import Customer, Order
from ct_insider.commercetools.queries import orders_holding_payments
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import Identifiers, User
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.mapping.customers import customer_uuid
from ct_insider.mapping.orders import MappedOrder, OrderContext, map_order
from ct_insider.sync.ledger import DeliveryLedger, InFlight, PendingEvent, PendingOrder
from ct_insider.sync.reports import Rejection, SyncStats, validation_reasons
from ct_insider.sync.taxonomy import TaxonomyResolver
from ct_insider.sync.window import parse_timestamp

log = get_logger(__name__)

ORDER_EXPAND = ("paymentInfo.payments[*]", "discountCodes[*].discountCode")
# Verification reads events this far around the expected timestamps.
VERIFY_SLACK = timedelta(days=1)

EventIdentity = tuple[str, str | None, str | None]  # event name, group id, product id


def _pending(mapped: MappedOrder, delivered: frozenset[str]) -> PendingOrder:
    assert mapped.identifiers is not None
    return PendingOrder(
        identifiers=mapped.identifiers.to_json_dict(),
        events=[
            PendingEvent(
                key=keyed.key,
                event_name=keyed.event.event_name,
                timestamp=keyed.event.timestamp,
                event_group_id=keyed.event.event_params.get("event_group_id"),
                product_id=keyed.event.event_params.get("product_id"),
            )
            for keyed in mapped.events
        ],
        sending=[keyed.key for keyed in mapped.events if keyed.key not in delivered],
    )


class OrderEventSender:
    """One instance per worker; shared by backfill, delta sync and (later) the bridge."""

    def __init__(
        self,
        ct: CommercetoolsClient,
        insider: InsiderClient,
        ledger: DeliveryLedger,
        taxonomy: TaxonomyResolver,
        config: MappingConfig,
    ) -> None:
        self._ct = ct
        self._insider = insider
        self._ledger = ledger
        self._taxonomy = taxonomy
        self._config = config

    async def _customer_uuids(self, customer_ids: Sequence[str]) -> dict[str, str]:
        if self._config.uuid_source == "id" or not customer_ids:
            return {}
        uuids: dict[str, str] = {}
        for raw in await self._ct.find_in("customers", customer_ids, lambda q: f"id in ({q})"):
            uuid = customer_uuid(Customer.model_validate(raw), self._config)
            if uuid:
                uuids[str(raw["id"])] = uuid
        return uuids

    async def _context(self, orders: list[Order]) -> OrderContext:
        product_ids = [line.product_id for o in orders for line in o.line_items if line.product_id]
        customer_ids = [o.customer_id for o in orders if o.customer_id]
        return OrderContext(
            customer_uuids=await self._customer_uuids(customer_ids),
            taxonomies=await self._taxonomy.taxonomies(product_ids),
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

    async def send_batch(
        self, records: list[dict[str, Any]], *, lane: str, skip_hook: bool
    ) -> SyncStats:
        """Map a batch of orders and deliver each event not yet in the ledger."""
        stats = SyncStats(processed=len(records))
        orders = self._parse(records, stats)
        context = await self._context(orders)
        sendable: list[MappedOrder] = []
        for order in orders:
            mapped = map_order(order, self._config, context)
            if mapped.warnings:
                stats.warnings += len(mapped.warnings)
                log.warning("order values dropped", order_id=order.id, warnings=mapped.warnings)
            if mapped.rejection:
                stats.reject(
                    Rejection(record_id=order.id, stage="mapping", reasons=[mapped.rejection])
                )
                log.warning("order rejected", order_id=order.id, reasons=[mapped.rejection])
                continue
            sendable.append(mapped)

        entries = await self._ledger.entries([m.order_id for m in sendable])
        users: list[User] = []
        in_flight = InFlight()
        for mapped in sendable:
            delivered = entries[mapped.order_id].delivered
            user = mapped.user(skip=delivered)
            if user is None:
                stats.skipped += 1  # every event of this order was delivered before
                continue
            users.append(user)
            in_flight.orders[mapped.order_id] = _pending(mapped, delivered)
        if not users:
            return stats

        await self._ledger.mark_in_flight(lane, in_flight)
        result = await self._insider.upsert_users(users, skip_hook=skip_hook, repeatable=False)
        refused = {failure.index: failure.reasons for failure in result.failures}
        delivered_now: dict[str, set[str]] = {}
        for index, (order_id, pending) in enumerate(in_flight.orders.items()):
            if index in refused:
                # Treated as not stored (Insider validates a user before storing it); the
                # order stays out of the ledger, so a later run tries it again.
                stats.reject(Rejection(record_id=order_id, stage="insider", reasons=refused[index]))
                log.warning("order refused by Insider", order_id=order_id, reasons=refused[index])
                continue
            delivered_now[order_id] = set(pending.sending)
        await self._ledger.record(entries, delivered_now)
        stats.sent += len(delivered_now)
        stats.events += sum(len(keys) for keys in delivered_now.values())
        return stats

    async def send_for_payments(
        self, payments: list[dict[str, Any]], *, lane: str, skip_hook: bool
    ) -> SyncStats:
        """Payments changed (e.g. a refund added) without touching their orders'
        lastModifiedAt: send the new events of the orders that hold them."""
        records = await orders_holding_payments(
            self._ct, [str(p["id"]) for p in payments], expand=ORDER_EXPAND
        )
        if not records:
            return SyncStats()
        return await self.send_batch(records, lane=lane, skip_hook=skip_hook)

    async def recover(self, lane: str) -> int:
        """After a crash or an ambiguous failure: settle the batch that was in flight.

        Events Insider already holds are written to the ledger (so they are not sent
        again); the rest stay out of it and go out when the batch is read again.
        """
        marker = await self._ledger.in_flight(lane)
        if marker is None:
            return 0
        entries = await self._ledger.entries(list(marker.orders))
        confirmed: dict[str, set[str]] = {}
        for order_id, pending in marker.orders.items():
            delivered = entries[order_id].delivered
            if pending.open_events(delivered):
                confirmed[order_id] = await self._found_in_insider(pending, delivered)
        await self._ledger.record(entries, confirmed)
        await self._ledger.clear_in_flight(lane)
        found = sum(len(keys) for keys in confirmed.values())
        log.info(
            "in-flight batch settled",
            lane=lane,
            orders=len(marker.orders),
            events_found_in_insider=found,
        )
        return found

    async def finish(self, lane: str) -> None:
        """The lane's last batch is in the ledger: its marker has nothing left to settle."""
        await self._ledger.clear_in_flight(lane)

    async def _found_in_insider(self, pending: PendingOrder, delivered: frozenset[str]) -> set[str]:
        """Keys of the open events the profile holds. Identical-looking events (same name,
        order and product) are matched by count, after discounting those delivered before."""
        open_events = pending.open_events(delivered)
        times = [parse_timestamp(e.timestamp) for e in pending.events]
        profile = await self._insider.read_profile(
            Identifiers.model_validate(pending.identifiers).strongest(),
            attributes=["uuid"],
            events={
                "start_date": int((min(times) - VERIFY_SLACK).timestamp()),
                "end_date": int((max(times) + VERIFY_SLACK).timestamp()),
                "wanted": [
                    {"event_name": name, "params": ["event_group_id", "product_id"]}
                    for name in sorted({e.event_name for e in pending.events})
                ],
            },
        )
        if profile is None:
            return set()
        stored: Counter[EventIdentity] = Counter()
        for name, events in (profile.get("events") or {}).items():
            for event in events:
                stored[(name, event.get("event_group_id"), event.get("product_id"))] += 1
        for event in pending.events:
            if event.key in delivered or event.key not in pending.sending:
                identity = (event.event_name, event.event_group_id, event.product_id)
                stored[identity] -= 1
        found = set()
        for event in open_events:
            identity = (event.event_name, event.event_group_id, event.product_id)
            if stored[identity] > 0:
                stored[identity] -= 1
                found.add(event.key)
        return found
