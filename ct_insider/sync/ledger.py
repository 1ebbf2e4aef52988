"""The delivery ledger: which order events Insider has acknowledged.

Insider stores every event it is sent and has no deduplication key, so "each purchase
event once" has to be decided on our side, by every path that sends order events
(backfill, delta sync, the bridge) and by every worker on every machine. The ledger lives
in the retailer's commercetools project as custom objects, one per order:

    container `ct-insider-delivered-events`, key = order id,
    value {"delivered": ["purchase:<line id>", "refund:transaction:<id>", ...]}

Writes use the object's version (0 = create only), so two writers never lose each
other's entries. A batch is written to an in-flight marker before it is sent; if the
sender dies between Insider's answer and the ledger write, the next attempt finds the
marker and asks Insider (profile read) which of those events arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsConflict, CommercetoolsNotFound
from ct_insider.logging import get_logger
from ct_insider.replenishment.model import TimerChange
from ct_insider.sync.window import parse_timestamp

log = get_logger(__name__)

LEDGER_CONTAINER = "ct-insider-delivered-events"
IN_FLIGHT_CONTAINER = "ct-insider-in-flight"
MAX_CONFLICT_RETRIES = 8


@dataclass(frozen=True)
class LedgerEntry:
    delivered: frozenset[str] = frozenset()
    version: int = 0  # 0: no object yet
    modified_at: datetime | None = None  # last written (None: no object yet)


class PendingEvent(BaseModel):
    """What verification needs to recognise one event in an Insider profile."""

    key: str
    event_name: str
    timestamp: str
    event_group_id: str | None = None
    product_id: str | None = None
    # Replenishment timer changes its delivery implies (applied once it is confirmed).
    timer_changes: list[TimerChange] = Field(default_factory=list)


class PendingOrder(BaseModel):
    identifiers: dict[str, Any]
    events: list[PendingEvent]  # all the order's events, delivered before or not
    sending: list[str]  # keys of the events in this batch

    def open_events(self, delivered: frozenset[str]) -> list[PendingEvent]:
        return [e for e in self.events if e.key in self.sending and e.key not in delivered]


class InFlight(BaseModel):
    orders: dict[str, PendingOrder] = Field(default_factory=dict)


def _lane_key(lane: str) -> str:
    # Custom object keys allow [-_~.a-zA-Z0-9] only; lanes are workflow ids.
    return hashlib.sha256(lane.encode()).hexdigest()[:40]


class DeliveryLedger:
    def __init__(
        self,
        ct: CommercetoolsClient,
        *,
        container: str = LEDGER_CONTAINER,
        in_flight_container: str = IN_FLIGHT_CONTAINER,
        concurrency: int = 8,
    ) -> None:
        self._ct = ct
        self._container = container
        self._in_flight_container = in_flight_container
        self._writes = asyncio.Semaphore(concurrency)

    async def entries(self, order_ids: Sequence[str]) -> dict[str, LedgerEntry]:
        """The ledger entry of every order id (an empty one for orders never sent)."""
        found: dict[str, LedgerEntry] = {order_id: LedgerEntry() for order_id in order_ids}
        container = json.dumps(self._container)
        for obj in await self._ct.find_in(
            "custom-objects", order_ids, lambda q: f"container={container} and key in ({q})"
        ):
            found[str(obj["key"])] = _entry(obj)
        return found

    async def record(
        self, known: Mapping[str, LedgerEntry], delivered: Mapping[str, Iterable[str]]
    ) -> None:
        """Add delivered event keys to the orders' entries (merging with concurrent writers)."""

        async def one(order_id: str, keys: frozenset[str]) -> None:
            async with self._writes:
                await self._merge(order_id, known.get(order_id, LedgerEntry()), keys)

        await asyncio.gather(
            *(one(order_id, frozenset(keys)) for order_id, keys in delivered.items() if keys)
        )

    async def _merge(self, order_id: str, entry: LedgerEntry, keys: frozenset[str]) -> None:
        for _ in range(MAX_CONFLICT_RETRIES):
            if keys <= entry.delivered:
                return
            draft = {
                "container": self._container,
                "key": order_id,
                "value": {"delivered": sorted(entry.delivered | keys)},
                "version": entry.version,
            }
            try:
                await self._ct.post_json("custom-objects", draft)
                return
            except CommercetoolsConflict:
                entry = (await self.entries([order_id]))[order_id]
        raise CommercetoolsConflict(409, f"ledger entry {order_id} keeps changing", [])

    async def correct(
        self,
        order_id: str,
        *,
        held: Iterable[str],
        lost: Iterable[str],
        expected_version: int | None = None,
    ) -> bool:
        """Make an order's entry say what Insider was found to hold: `held` keys are added,
        `lost` ones (listed as delivered, yet not in Insider) removed, so they go out again.

        With `expected_version` (the entry's version when Insider was read) nothing is
        written if the entry changed since: another path delivered meanwhile, so what was
        read no longer tells what is lost. Returns False then."""
        add, remove = frozenset(held), frozenset(lost)
        entry = (await self.entries([order_id]))[order_id]
        for _ in range(MAX_CONFLICT_RETRIES):
            if expected_version is not None and entry.version != expected_version:
                return False
            wanted = (entry.delivered | add) - remove
            if wanted == entry.delivered:
                return True
            draft = {
                "container": self._container,
                "key": order_id,
                "value": {"delivered": sorted(wanted)},
                "version": entry.version,
            }
            try:
                await self._ct.post_json("custom-objects", draft)
                return True
            except CommercetoolsConflict:
                entry = (await self.entries([order_id]))[order_id]
        raise CommercetoolsConflict(409, f"ledger entry {order_id} keeps changing", [])

    async def in_flight_elsewhere(self, order_ids: Sequence[str], lane: str) -> set[str]:
        """Which of these orders another lane (a delta lane, a backfill chunk, a journey
        shard) has in flight with events not yet in the ledger: being delivered right now."""
        wanted = set(order_ids)
        markers: list[tuple[str, PendingOrder]] = []
        where = f"container={json.dumps(self._in_flight_container)}"
        async for page in self._ct.pages("custom-objects", where=where):
            for obj in page.results:
                value = obj.get("value") or {}
                if not isinstance(value, dict) or value.get("lane") == lane:
                    continue
                for order_id, pending in (value.get("orders") or {}).items():
                    if order_id in wanted:
                        markers.append((order_id, PendingOrder.model_validate(pending)))
        if not markers:
            return set()
        entries = await self.entries(sorted({order_id for order_id, _ in markers}))
        return {
            order_id
            for order_id, pending in markers
            if pending.open_events(entries[order_id].delivered)
        }

    async def mark_in_flight(self, lane: str, in_flight: InFlight) -> None:
        await self._ct.post_json(
            "custom-objects",
            {
                "container": self._in_flight_container,
                "key": _lane_key(lane),
                "value": {"lane": lane, **in_flight.model_dump(mode="json")},
            },
        )

    async def in_flight(self, lane: str) -> InFlight | None:
        try:
            obj = await self._ct.get_json(f"{self._in_flight_path(lane)}")
        except CommercetoolsNotFound:
            return None
        return InFlight.model_validate(obj["value"])

    async def clear_in_flight(self, lane: str) -> None:
        await self._ct.delete(self._in_flight_path(lane))

    def _in_flight_path(self, lane: str) -> str:
        return f"custom-objects/{self._in_flight_container}/{_lane_key(lane)}"


def _entry(obj: dict[str, Any]) -> LedgerEntry:
    value = obj.get("value") or {}
    delivered = value.get("delivered") if isinstance(value, dict) else None
    modified = obj.get("lastModifiedAt")
    return LedgerEntry(
        delivered=frozenset(str(k) for k in delivered or []),
        version=int(obj["version"]),
        modified_at=parse_timestamp(modified) if isinstance(modified, str) else None,
    )
