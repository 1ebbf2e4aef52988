"""Run a consistency check over some commercetools records, and repair what drifted.

What Insider should hold comes from the same mapping the syncs use; what it holds from
paced profile reads (customers, order events) or, for the catalog, which Insider cannot be
read back from, from the fingerprint store (what was last accepted). A repair sends exactly
the drifted records again through the normal senders, so the delivery ledger and the
fingerprint store stay right.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ct_insider.checks.catalog import SOURCE_NOTE, catalog_drift
from ct_insider.checks.customers import compare_customer
from ct_insider.checks.drift import DUPLICATES_NEED_MANUAL_ACTION, DriftReport, RecordDrift
from ct_insider.checks.orders import ExpectedOrder, compare_orders
from ct_insider.checks.reads import CountedReads
from ct_insider.clients import ConnectorClients
from ct_insider.commercetools.models import Customer
from ct_insider.deadletters import DeadLetterStore
from ct_insider.insider.errors import InsiderBadRequest
from ct_insider.insider.held import READ_SLACK
from ct_insider.insider.models import User
from ct_insider.logging import get_logger, mask_pii
from ct_insider.mapping.customers import map_customer
from ct_insider.sync.customers import CUSTOMER_EXPAND, send_customer_batch
from ct_insider.sync.orders import ORDER_EXPAND, PreparedOrder
from ct_insider.sync.rejected import sync_letters
from ct_insider.sync.reports import SyncStats
from ct_insider.sync.window import parse_timestamp

log = get_logger(__name__)

# Profiles read at once (the client's quota pacing still spaces them).
READ_CONCURRENCY = 8
# Event params a check reads to recognise order events.
ORDER_EVENT_PARAMS = ["event_group_id", "product_id"]

Progress = Callable[[int], None]  # records compared so far in this call

TOO_RECENT_NOTE = (
    "orders changed or delivered within the freshness margin, or being delivered by "
    "another run right now, were not judged (too recent: Insider may not show their "
    "events yet) and never repaired: a later check covers them"
)


def _note_repair(
    report: DriftReport, drift: RecordDrift, refusal: list[str] | None, label: str
) -> None:
    """A drifted record re-sent by a repair: repaired, or a failure with Insider's reasons."""
    if refusal is None:
        drift.repaired = True
        report.repaired += 1
    else:
        report.repair_failures.append(f"{label}: {mask_pii('; '.join(refusal))}")


class ConsistencyChecker(ConnectorClients):
    async def _records(
        self, resource: str, ids: list[str], expand: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        """The records in `ids` order; one deleted since it was sampled is left out."""
        found = await self._ct.find_in(resource, ids, lambda q: f"id in ({q})", expand=expand)
        by_id = {str(r["id"]): r for r in found}
        return [by_id[i] for i in ids if i in by_id]

    async def _dead_letter(
        self, stats: SyncStats, records: list[dict[str, Any]], resource: str, lane: str
    ) -> None:
        """A record refused during a repair is dead-lettered like on every delivery path."""
        if stats.rejections:
            letters = sync_letters(
                stats.rejections,
                resource=resource,
                run=lane,
                skip_hook=True,
                records=records,
                path="check",
            )
            await DeadLetterStore(self._ct).put(letters)

    # -- customers ---------------------------------------------------------------------

    async def check_customers(
        self, ids: list[str], *, repair: bool, lane: str, on_progress: Progress | None = None
    ) -> DriftReport:
        report = DriftReport(entity="customers", source="insider-profile-api", sampled=len(ids))
        records = await self._records("customers", ids, CUSTOMER_EXPAND)
        expected: list[tuple[dict[str, Any], User]] = []
        for raw in records:
            try:
                mapped = map_customer(Customer.model_validate(raw), self._mapping)
            except ValidationError:
                mapped = None
            if mapped is None or mapped.user is None:
                report.skipped += 1  # the sync rejects it too (see its run report)
            else:
                expected.append((raw, mapped.user))
        reads = CountedReads(self._insider)
        gate = asyncio.Semaphore(READ_CONCURRENCY)
        done = 0

        async def compare(raw: dict[str, Any], user: User) -> RecordDrift | None:
            nonlocal done
            async with gate:
                try:
                    profile = await reads.profile(user.identifiers.strongest())
                except InsiderBadRequest as exc:
                    report.unreadable.append(f"{raw['id']}: {mask_pii(str(exc))}")
                    return None
            done += 1
            if on_progress is not None:
                on_progress(done)
            return compare_customer(str(raw["id"]), user, profile)

        outcomes = await asyncio.gather(*(compare(raw, user) for raw, user in expected))
        report.checked = len(expected) - len(report.unreadable)
        report.profile_reads, report.units_spent = reads.reads, round(reads.units, 2)
        drifted = [d for d in outcomes if d is not None]
        if repair and drifted:
            await self._repair_customers(records, drifted, lane, report)
        for drift in drifted:
            report.add(drift)
        report.notes.append(
            "profiles Insider holds for customers no longer in commercetools (extra) are not "
            "found by a check: Insider has no way to list profiles"
        )
        return report

    async def _repair_customers(
        self,
        records: list[dict[str, Any]],
        drifted: list[RecordDrift],
        lane: str,
        report: DriftReport,
    ) -> None:
        by_id = {str(r["id"]): r for r in records}
        sent = [by_id[d.record_id] for d in drifted]
        # Re-sent as historical data: a repair must not start live journeys.
        stats = await send_customer_batch(self._insider, sent, self._mapping, skip_hook=True)
        await self._dead_letter(stats, sent, "customers", lane)
        refused = {r.record_id: r.reasons for r in stats.rejections}
        for drift in drifted:
            _note_repair(report, drift, refused.get(drift.record_id), drift.record_id)

    # -- orders ------------------------------------------------------------------------

    async def check_orders(
        self,
        ids: list[str],
        *,
        repair: bool,
        lane: str,
        too_recent_after: datetime | None = None,
        on_progress: Progress | None = None,
    ) -> DriftReport:
        """`too_recent_after`: orders changed, or ledger entries written, after this moment
        are not judged (delivery may still be settling them)."""
        report = DriftReport(entity="orders", source="insider-profile-api", sampled=len(ids))
        records = await self._records("orders", ids, ORDER_EXPAND)
        if too_recent_after is not None:
            settled = [
                r for r in records if parse_timestamp(str(r["lastModifiedAt"])) <= too_recent_after
            ]
            report.too_recent = len(records) - len(settled)
            records = settled
        prepared = await self._orders.prepare(records)
        report.skipped = len(records) - len(prepared.orders)
        judged = dict(prepared.orders)
        if too_recent_after is not None:
            for order_id, order in prepared.orders.items():
                written = order.entry.modified_at
                if written is not None and written > too_recent_after:
                    del judged[order_id]  # delivered just now: maybe not readable yet
            report.too_recent += len(prepared.orders) - len(judged)
        if report.too_recent:
            report.notes.append(TOO_RECENT_NOTE)
        by_person: dict[str, list[PreparedOrder]] = defaultdict(list)
        for order in judged.values():
            if order.mapped.identifiers is not None and order.mapped.events:
                person = json.dumps(order.mapped.identifiers.strongest(), sort_keys=True)
                by_person[person].append(order)
        reads = CountedReads(self._insider)
        gate = asyncio.Semaphore(READ_CONCURRENCY)
        held: dict[str, set[str]] = {}
        unread: set[str] = set()
        missing: dict[str, set[str]] = {}
        drifted: list[RecordDrift] = []
        done = 0

        async def compare(person: str, orders: list[PreparedOrder]) -> None:
            nonlocal done
            events = [keyed.event for order in orders for keyed in order.mapped.events]
            moments = [parse_timestamp(e.timestamp) for e in events]
            query = {
                "start_date": int((min(moments) - READ_SLACK).timestamp()),
                "end_date": int((max(moments) + READ_SLACK).timestamp()),
                "wanted": [
                    {"event_name": name, "params": ORDER_EVENT_PARAMS}
                    for name in sorted({e.event_name for e in events})
                ],
            }
            async with gate:
                try:
                    profile = await reads.profile(json.loads(person), ["uuid"], query)
                except InsiderBadRequest as exc:
                    ids = ", ".join(order.order_id for order in orders)
                    report.unreadable.append(f"{ids}: {mask_pii(str(exc))}")
                    unread.update(order.order_id for order in orders)
                    return
            expected = [
                ExpectedOrder(
                    order.order_id,
                    str(order.mapped.events[0].event.event_params.get("event_group_id")),
                    order.mapped.events,
                )
                for order in orders
            ]
            outcome = compare_orders(expected, (profile or {}).get("events") or {})
            held.update(outcome.held)
            missing.update(outcome.missing)
            drifted.extend(outcome.drift)
            done += len(orders)
            if on_progress is not None:
                on_progress(done)

        await asyncio.gather(*(compare(p, orders) for p, orders in by_person.items()))
        report.checked = len(judged) - len(unread)
        report.profile_reads, report.units_spent = reads.reads, round(reads.units, 2)
        if repair:
            lost = {oid: keys for oid, keys in missing.items() if keys}
            if lost:
                busy = await self._repair_orders(records, judged, held, lost, drifted, lane, report)
                if busy:
                    # Another run delivered (or is delivering) them since the read: what the
                    # read showed is no judgement on them.
                    drifted = [d for d in drifted if d.record_id not in busy]
                    report.checked -= len(busy)
                    report.too_recent += len(busy)
                    if TOO_RECENT_NOTE not in report.notes:
                        report.notes.append(TOO_RECENT_NOTE)
        for drift in sorted(drifted, key=lambda d: (d.record_id, d.item or "")):
            report.add(drift)
        if report.counts.duplicated or report.counts.extra:
            report.notes.append(DUPLICATES_NEED_MANUAL_ACTION)
        return report

    async def _repair_orders(
        self,
        records: list[dict[str, Any]],
        judged: dict[str, PreparedOrder],
        held: dict[str, set[str]],
        lost: dict[str, set[str]],
        drifted: list[RecordDrift],
        lane: str,
        report: DriftReport,
    ) -> set[str]:
        """Send exactly the missing events again: the ledger is first made to say what
        Insider holds (held events in, missing ones out), then the normal sender sends what
        the ledger lacks - under an in-flight marker, so a lost answer is settled, not
        guessed.

        An order another lane has in flight, or whose ledger entry changed since it was
        read, is left alone (a re-send could store its events twice, and Insider cannot
        delete them); those are returned."""
        await self._orders.recover(lane)  # a repair of this lane that died mid-request
        ledger = self._orders.ledger
        busy = await ledger.in_flight_elsewhere(sorted(lost), lane)
        for order_id, keys in lost.items():
            if order_id in busy:
                continue
            corrected = await ledger.correct(
                order_id,
                held=held.get(order_id, ()),
                lost=keys,
                expected_version=judged[order_id].entry.version,
            )
            if not corrected:
                busy.add(order_id)
        resend = [r for r in records if str(r["id"]) in lost and str(r["id"]) not in busy]
        stats = SyncStats()
        if resend:
            stats = await self._orders.send_batch(resend, lane=lane, skip_hook=True)
            await self._orders.finish(lane)
        await self._dead_letter(stats, resend, "orders", lane)
        refused = {r.record_id: r.reasons for r in stats.rejections}
        for drift in drifted:
            if drift.kind != "missing" or drift.record_id in busy:
                continue
            label = f"{drift.record_id} {drift.item}"
            _note_repair(report, drift, refused.get(drift.record_id), label)
        log.info(
            "order events re-sent",
            orders=len(resend),
            events=stats.events,
            left_to_other_runs=len(busy),
            lane=lane,
        )
        return busy

    # -- catalog -----------------------------------------------------------------------

    async def check_catalog(
        self, ids: list[str], *, repair: bool, lane: str, on_progress: Progress | None = None
    ) -> DriftReport:
        report = DriftReport(entity="catalog", source="fingerprint-store", sampled=len(ids))
        records = await self._records("products", ids, ())
        plan = await self._catalog.plan_products(records, mode="changes")
        report.checked = len(records)
        report.skipped = plan.stats.rejected  # items the mapping refuses (the sync too)
        drifted = catalog_drift(plan)
        if on_progress is not None:
            on_progress(len(records))
        if repair and drifted:
            products = {d.record_id for d in drifted}
            resend = [r for r in records if str(r["id"]) in products]
            stats = await self._catalog.send_products(resend, mode="changes")
            await self._dead_letter(stats, resend, "products", lane)
            refused = {r.record_id: r.reasons for r in stats.rejections if r.stage == "insider"}
            for drift in drifted:
                _note_repair(report, drift, refused.get(str(drift.item)), str(drift.item))
        for drift in drifted:
            report.add(drift)
        report.notes.append(SOURCE_NOTE)
        return report
