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
from typing import Any, assert_never

from pydantic import BaseModel, Field

from ct_insider.clients import ConnectorClients
from ct_insider.deadletters import DeadLetter, DeadLetterStore
from ct_insider.logging import get_logger
from ct_insider.resources import REDRIVE_READS, Redrive, synced
from ct_insider.sync.customers import send_customer_batch
from ct_insider.sync.rejected import sync_letters
from ct_insider.sync.reports import Rejection, SyncStats

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


# The resources a sync letter can name (one per dead-letter entity, from the registry).
REDRIVEN_RESOURCES = frozenset(entry.name for entry in REDRIVE_READS.values())


def is_sync_letter(letter: DeadLetter) -> bool:
    redrive = letter.redrive or {}
    return redrive.get("resource") in REDRIVEN_RESOURCES and isinstance(redrive.get("id"), str)


class SyncRedriver(ConnectorClients):
    @property
    def _store(self) -> DeadLetterStore:
        return DeadLetterStore(self._ct)

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
        # A letter refused again keeps the path it came from (one re-drive may hold letters
        # of a backfill and of a delta sync).
        path_of = {letter.record_id: letter.path for letter in letters}
        path_of.update({str((letter.redrive or {})["id"]): letter.path for letter in letters})
        by_path: dict[str | None, list[Rejection]] = defaultdict(list)
        for rejection in stats.rejections:
            source = rejection.source_id or rejection.record_id
            path = path_of.get(rejection.record_id, path_of.get(source, letters[0].path))
            by_path[path].append(rejection)
        for path, rejections in by_path.items():
            await self._store.put(
                sync_letters(rejections, resource=resource, run=run, skip_hook=skip_hook, path=path)
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
        entry = synced(resource)
        reader = entry.redrive
        if reader is None:
            raise ValueError(f"{resource} has no re-drive reader")  # not a sync letter
        if reader is Redrive.PRODUCTS:
            # A product deleted since is hidden in Insider: that is its delivery.
            return await self._catalog.refresh(ids), set(ids)
        records: list[dict[str, Any]] = await self._ct.find_in(
            entry.endpoint, ids, lambda q: f"id in ({q})", expand=entry.expand
        )
        found = {str(record["id"]) for record in records}
        if not records:
            return SyncStats(), found
        match reader:
            case Redrive.ORDERS:
                # Like a sync chunk: a request a crashed attempt left in flight is settled
                # first.
                await self._orders.recover(run)
                stats = await self._orders.send_batch(records, lane=run, skip_hook=skip_hook)
                await self._orders.finish(run)
            case Redrive.CUSTOMERS:
                stats = await send_customer_batch(
                    self._insider, records, self._mapping, skip_hook=skip_hook
                )
            case _:
                assert_never(reader)
        return stats, found
