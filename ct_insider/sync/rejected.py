"""Rejected sync records go to the dead-letter store, one letter per record.

Backfill, delta sync, the full catalog sync and realtime catalog refreshes all report a
refused record as a `Rejection` in their stats; `dead_lettering` wraps a batch sender so
every rejection of a batch is also written to the store as soon as the batch is done (one
write per rejected record, none for the good ones). A letter holds what a re-drive needs
and nothing personal: the resource and id to read the record again from commercetools.
What a rejected record is, and where a re-drive reads it, come from the registry
(ct_insider/resources.py); the delivery path comes from the workflow that ran the sync
(its id says nothing reliable: a Temporal Schedule names its runs after the schedule).

A record rejected again (a later run, a retried chunk) is the same letter with one more
attempt. A record that a later run syncs fine keeps its letter until `ct-insider dlq
retry` (knowing that would cost a store read per good record): the re-drive finds it
sendable and removes the letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ct_insider.deadletters import DeadLetterDraft, DeadLetterPath, DeadLetterStore
from ct_insider.resources import DEAD_LETTER_ENTITIES, REDRIVE_READS
from ct_insider.sync.pipeline import BatchSender
from ct_insider.sync.reports import Rejection, SyncStats


def legacy_path_of_lane(lane: str) -> DeadLetterPath:
    """The path of a sync chunk scheduled before workflows passed it (one in flight while
    the worker was upgraded), from its workflow id: delta syncs are `delta-<entity>`, a
    catalog backfill names the catalog (`backfill-catalog-...`, the reconciliation
    schedule's runs), and every other chunk belongs to a backfill."""
    if lane.startswith("delta-"):
        return "delta"
    if "catalog" in lane:
        return "catalog"
    return "backfill"


def market_of(record: dict[str, Any] | None, record_id: str) -> dict[str, str]:
    """What the record says about its market: an order's country and store, a customer's
    stores, a catalog item's locale (its key ends in @locale)."""
    market: dict[str, str] = {}
    if "@" in record_id:
        market["locale"] = record_id.rpartition("@")[2]
    if record is None:
        return market
    if isinstance(record.get("country"), str):
        market["country"] = record["country"]
    store = record.get("store")
    if isinstance(store, dict) and isinstance(store.get("key"), str):
        market["store"] = store["key"]
    stores = record.get("stores")
    if isinstance(stores, list):
        keys = [s["key"] for s in stores if isinstance(s, dict) and isinstance(s.get("key"), str)]
        if keys:
            market["store"] = ",".join(keys)
    return market


def sync_letters(
    rejections: Sequence[Rejection],
    *,
    resource: str,
    run: str,
    skip_hook: bool,
    path: str | None,
    records: Sequence[dict[str, Any]] = (),
) -> list[DeadLetterDraft]:
    """The letters for a batch's rejections (`records`: the batch, for the market; `path`:
    where the records were being delivered, None when not known)."""
    entity = DEAD_LETTER_ENTITIES[resource]
    by_id = {str(record.get("id")): record for record in records}
    return [
        DeadLetterDraft(
            entity=entity,
            record_id=rejection.record_id,
            reasons=[f"{rejection.stage}: {reason}" for reason in rejection.reasons],
            run=run,
            market=market_of(by_id.get(rejection.record_id), rejection.record_id),
            path=path,
            redrive={
                "resource": REDRIVE_READS[entity].name,
                "id": rejection.source_id or rejection.record_id,
                "skip_hook": skip_hook,
            },
        )
        for rejection in rejections
    ]


def dead_lettering(
    send: BatchSender,
    store: DeadLetterStore,
    *,
    resource: str,
    run: str,
    skip_hook: bool,
    path: DeadLetterPath,
) -> BatchSender:
    """`send`, writing each batch's rejected records to the store before it counts as done
    (a crash before then sends the batch again, and the letters are written then)."""

    async def send_and_record(records: list[dict[str, Any]]) -> SyncStats:
        stats = await send(records)
        if stats.rejections:
            await store.put(
                sync_letters(
                    stats.rejections,
                    resource=resource,
                    run=run,
                    skip_hook=skip_hook,
                    path=path,
                    records=records,
                )
            )
        return stats

    return send_and_record
