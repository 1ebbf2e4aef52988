"""Re-drive sync dead letters: read the records again and send them the normal way.

A sync letter names a commercetools record (customer, order, or the product of a catalog
item). The re-drive reads the records as they are now - the cause may have been fixed in
commercetools since - and sends them through the same sender a sync uses. A letter whose
record went through is deleted (`key@version`: one that a newer failure changed meanwhile
stays); one refused again stays with one more attempt and the new reason; a customer or
order deleted from commercetools since has nothing left to send, so its letter goes too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import DeadLetter, DeadLetterStore
from ct_insider.insider.client import InsiderClient
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.catalog import CatalogSender
from ct_insider.sync.customers import CUSTOMER_EXPAND, send_customer_batch
from ct_insider.sync.orders import ORDER_EXPAND, OrderEventSender
from ct_insider.sync.rejected import sync_letters
from ct_insider.sync.reports import SyncStats

log = get_logger(__name__)


class RedriveResult(BaseModel):
    delivered: list[str] = Field(default_factory=list)  # letters removed: sent this time
    refused: list[str] = Field(default_factory=list)  # kept, one more attempt, new reason
    gone: list[str] = Field(default_factory=list)  # record deleted since: letter removed
    missing: list[str] = Field(default_factory=list)  # no such letter (purged, re-driven)
    not_redrivable: list[str] = Field(default_factory=list)  # not a sync letter

    def add(self, other: RedriveResult) -> None:
        self.delivered += other.delivered
        self.refused += other.refused
        self.gone += other.gone
        self.missing += other.missing
        self.not_redrivable += other.not_redrivable


def is_sync_letter(letter: DeadLetter) -> bool:
    redrive = letter.redrive or {}
    return isinstance(redrive.get("resource"), str) and isinstance(redrive.get("id"), str)


class SyncRedriver:
    def __init__(
        self,
        ct: CommercetoolsClient,
        insider: InsiderClient,
        mapping: MappingConfig,
        orders: OrderEventSender,
        catalog: CatalogSender,
        store: DeadLetterStore,
    ) -> None:
        self._ct = ct
        self._insider = insider
        self._mapping = mapping
        self._orders = orders
        self._catalog = catalog
        self._store = store

    async def redrive(self, keys: Sequence[str], run: str) -> RedriveResult:
        """Re-drive the named letters; `run` (the re-drive workflow's id) names the run in
        letters refused again, and the lane of its order requests."""
        result = RedriveResult()
        groups: dict[tuple[str, bool], list[DeadLetter]] = defaultdict(list)
        for key in keys:
            letter = await self._store.get(key)
            if letter is None:
                result.missing.append(key)
            elif not is_sync_letter(letter):
                result.not_redrivable.append(key)
            else:
                redrive = letter.redrive or {}
                groups[(redrive["resource"], bool(redrive.get("skip_hook", True)))].append(letter)
        for (resource, skip_hook), letters in groups.items():
            result.add(await self._redrive(resource, skip_hook, letters, run))
        return result

    async def _redrive(
        self, resource: str, skip_hook: bool, letters: list[DeadLetter], run: str
    ) -> RedriveResult:
        ids = sorted({str((letter.redrive or {})["id"]) for letter in letters})
        stats, found = await self._send(resource, ids, skip_hook, run)
        refused = {rejection.record_id for rejection in stats.rejections}
        result = RedriveResult()
        if stats.rejections:
            await self._store.put(
                sync_letters(
                    stats.rejections,
                    resource=resource,
                    run=run,
                    skip_hook=skip_hook,
                    path=letters[0].path,
                )
            )
        done: list[str] = []
        for letter in letters:
            if letter.record_id in refused:
                result.refused.append(letter.key)
                continue
            if str((letter.redrive or {})["id"]) in found:
                result.delivered.append(letter.key)
            else:
                result.gone.append(letter.key)
            done.append(f"{letter.key}@{letter.version}")
        await self._store.delete(done)
        log.info(
            "dead letters re-driven",
            run=run,
            resource=resource,
            delivered=len(result.delivered),
            refused=len(result.refused),
            gone=len(result.gone),
        )
        return result

    async def _send(
        self, resource: str, ids: list[str], skip_hook: bool, run: str
    ) -> tuple[SyncStats, set[str]]:
        """(what sending the records now gave, the ids that still exist)."""
        if resource == "products":
            # A product deleted since is hidden in Insider: that is its delivery.
            return await self._catalog.refresh(ids), set(ids)
        expand = ORDER_EXPAND if resource == "orders" else CUSTOMER_EXPAND
        records: list[dict[str, Any]] = await self._ct.find_in(
            resource, ids, lambda q: f"id in ({q})", expand=expand
        )
        found = {str(record["id"]) for record in records}
        if not records:
            return SyncStats(), found
        if resource == "orders":
            # Like a sync chunk: a request a crashed attempt left in flight is settled first.
            await self._orders.recover(run)
            stats = await self._orders.send_batch(records, lane=run, skip_hook=skip_hook)
            await self._orders.finish(run)
            return stats, found
        stats = await send_customer_batch(
            self._insider, records, self._mapping, skip_hook=skip_hook
        )
        return stats, found
