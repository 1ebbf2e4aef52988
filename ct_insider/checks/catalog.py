"""Compare the catalog items commercetools maps to with what Insider's catalog was last given.

Insider's Catalog API cannot be read back (ingest/update only), so the found side is the
fingerprint store: what Insider accepted last, per item, as a content hash and a price-and-
stock hash. What a sync in "changes" mode would send now is exactly the drift: an item never
accepted (missing), one whose content or price/stock differs (stale), one Insider still
shows that is no longer sold (extra: a repair hides it). The hashes say which part differs,
not the old values.
"""

from __future__ import annotations

from typing import Any

from ct_insider.checks.drift import FieldDrift, RecordDrift
from ct_insider.sync.catalog import CatalogPlan
from ct_insider.sync.fingerprints import HIDDEN, PRICE_AND_STOCK

NOT_READABLE = "(not readable: differs from what Insider last accepted)"
SOURCE_NOTE = (
    "Insider's catalog cannot be read through its API: items were compared with the "
    "fingerprint store (what Insider last accepted); a change made inside Insider alone "
    "is not seen"
)


def _key(item: dict[str, Any]) -> str:
    return f"{item['item_id']}@{item['locale']}"


def catalog_drift(plan: CatalogPlan) -> list[RecordDrift]:
    ingest = {_key(item): item for item in plan.outgoing.ingest}
    update = {_key(item): item for item in plan.outgoing.update}
    drift: list[RecordDrift] = []
    for (product_id, key), (content, _) in sorted(plan.outgoing.prints.items()):
        previous = plan.stored[product_id].prints.get(key)
        if content == HIDDEN:
            drift.append(
                RecordDrift(
                    kind="extra",
                    record_id=product_id,
                    item=key,
                    detail="shown in Insider, no longer sold in this market",
                )
            )
        elif key in ingest and (previous is None or previous[0] == HIDDEN):
            drift.append(
                RecordDrift(
                    kind="missing",
                    record_id=product_id,
                    item=key,
                    detail="never accepted by Insider" if previous is None else "hidden in Insider",
                )
            )
        elif key in ingest:
            drift.append(
                RecordDrift(
                    kind="stale",
                    record_id=product_id,
                    item=key,
                    fields=[FieldDrift(field="content", expected="(current)", found=NOT_READABLE)],
                )
            )
        elif key in update:
            item = update[key]
            fields = [
                FieldDrift.of(name, item[name], None).model_copy(update={"found": NOT_READABLE})
                for name in PRICE_AND_STOCK
                if name in item
            ]
            drift.append(RecordDrift(kind="stale", record_id=product_id, item=key, fields=fields))
    return drift
