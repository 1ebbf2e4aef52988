"""Catalog batches: products to Insider catalog items per market, sending only what changed.

A full sync ingests every item. Otherwise an item whose price or stock alone changed goes
out as a partial update, any other change as the whole item, an unchanged one not at all,
and a variant that disappeared (deleted, unpublished, no longer sellable in a market) is
hidden, since Insider has no delete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ValidationError

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.models import (
    InventoryEntry,
    Price,
    ProductProjection,
    StandalonePrice,
)
from ct_insider.commercetools.queries import products_with_skus
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import CatalogLocale, CatalogResult
from ct_insider.logging import get_logger
from ct_insider.mapping.catalog import CatalogRules, hidden, map_product
from ct_insider.sync.fingerprints import (
    HIDDEN,
    PRICE_AND_STOCK,
    FingerprintStore,
    ProductPrints,
    fingerprint,
)
from ct_insider.sync.reports import Rejection, SyncStats, validation_reasons
from ct_insider.sync.taxonomy import TaxonomyResolver

log = get_logger(__name__)

CatalogMode = Literal["full", "changes"]
# Fingerprint writes (commercetools custom objects) in flight at once per batch.
FINGERPRINT_WRITES_IN_FLIGHT = 8


def projection_of(product: dict[str, Any]) -> dict[str, Any]:
    """A `products` resource as a projection of its current (published) data."""
    if "masterData" not in product:
        return product  # already a projection
    master = product["masterData"]
    return {
        **master.get("current", {}),
        "id": product["id"],
        "version": product["version"],
        "key": product.get("key"),
        "productType": product.get("productType"),
        "published": bool(master.get("published")),
        "createdAt": product.get("createdAt"),
        "lastModifiedAt": product.get("lastModifiedAt"),
    }


def _variants(product: dict[str, Any]) -> list[dict[str, Any]]:
    current = projection_of(product)
    return [current.get("masterVariant") or {}, *(current.get("variants") or [])]


@dataclass
class _Outgoing:
    ingest: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    # (product id, item key) -> fingerprint to store once Insider accepted the item
    prints: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def hide_missing(
        self, product_id: str, before: dict[str, tuple[str, str]], keep: set[str]
    ) -> None:
        """Hide every item Insider holds for the product that is not in `keep`."""
        for key, previous in before.items():
            if key not in keep and previous[0] != HIDDEN:
                item_id, _, locale = key.rpartition("@")
                self.update.append(hidden(item_id, locale))
                self.prints[(product_id, key)] = (HIDDEN, HIDDEN)


@dataclass
class CatalogPlan:
    """Items to send for some products, and what the fingerprint store held for them."""

    outgoing: _Outgoing
    stored: dict[str, ProductPrints]
    stats: SyncStats  # mapping rejections and unchanged items so far


class CatalogSender:
    def __init__(
        self,
        ct: CommercetoolsClient,
        insider: InsiderClient,
        taxonomy: TaxonomyResolver,
        rules: CatalogRules,
        fingerprints: FingerprintStore,
    ) -> None:
        self._ct = ct
        self._insider = insider
        self._taxonomy = taxonomy
        self._rules = rules
        self._fingerprints = fingerprints
        self._locales_registered = False

    async def ensure_locales(self) -> None:
        """Register the markets' locales with Insider (idempotent; once per process)."""
        if self._locales_registered:
            return
        locales = []
        for market in self._rules.markets:
            language, _, store = market.locale.partition(":")
            locales.append(
                CatalogLocale(language_and_country_code=language, store_id=store or None)
            )
        await self._insider.create_locales(locales)
        self._locales_registered = True

    async def _standalone_prices(self, skus: list[str]) -> dict[str, list[Price]]:
        found: dict[str, list[Price]] = {}
        for raw in await self._ct.find_in("standalone-prices", skus, lambda q: f"sku in ({q})"):
            price = StandalonePrice.model_validate(raw)
            if price.active:
                found.setdefault(price.sku, []).append(price)
        return found

    async def _inventory(self, skus: list[str]) -> dict[tuple[str, str | None], InventoryEntry]:
        entries = await self._ct.find_in("inventory", skus, lambda q: f"sku in ({q})")
        found: dict[tuple[str, str | None], InventoryEntry] = {}
        for raw in entries:
            entry = InventoryEntry.model_validate(raw)
            found[(entry.sku, entry.supply_channel.id if entry.supply_channel else None)] = entry
        return found

    def _parse(self, records: list[dict[str, Any]], stats: SyncStats) -> list[ProductProjection]:
        products = []
        for raw in records:
            try:
                products.append(ProductProjection.model_validate(projection_of(raw)))
            except ValidationError as exc:
                reasons = validation_reasons(exc)
                stats.reject(
                    Rejection(record_id=str(raw.get("id")), stage="mapping", reasons=reasons)
                )
                log.warning("product rejected", product_id=raw.get("id"), reasons=reasons)
        return products

    async def send_products(self, records: list[dict[str, Any]], *, mode: CatalogMode) -> SyncStats:
        plan = await self.plan_products(records, mode=mode)
        refused = await self._send(plan.outgoing, plan.stats)
        await self._remember(plan.stored, plan.outgoing, refused)
        return plan.stats

    async def plan_products(
        self, records: list[dict[str, Any]], *, mode: CatalogMode
    ) -> CatalogPlan:
        """What sending these products would send (nothing is sent; consistency checks
        compare it with the fingerprint store this way)."""
        stats = SyncStats(processed=len(records))
        products = self._parse(records, stats)
        skus = [v.sku for p in products for v in p.all_variants if v.sku]
        inventory = await self._inventory(skus)
        standalone = await self._standalone_prices(
            [
                v.sku
                for p in products
                for v in p.all_variants
                if v.sku and (p.price_mode == "Standalone" or not v.prices)
            ]
        )
        stored = await self._fingerprints.load([p.id for p in products])
        outgoing = _Outgoing()
        now = datetime.now(UTC)
        for product in products:
            before = stored[product.id].prints
            seen: set[str] = set()
            if product.published:
                items = map_product(
                    product,
                    self._rules,
                    taxonomy=await self._taxonomy.path([c.id for c in product.categories]),
                    inventory=inventory,
                    at=now,
                    standalone_prices=standalone,
                )
            else:
                items = []
            unsendable: dict[str, str] = {}
            for mapped in items:
                key = f"{mapped.item_id}@{mapped.locale}"
                if mapped.item is None:
                    reason = mapped.rejection or "not mappable"
                    unsendable[key] = reason
                    stats.reject(
                        Rejection(
                            record_id=key, stage="mapping", reasons=[reason], source_id=product.id
                        )
                    )
                    continue
                seen.add(key)
                self._plan(product.id, key, mapped.item, before.get(key), mode, outgoing, stats)
            if unsendable:
                log.warning("catalog items rejected", product_id=product.id, items=unsendable)
            outgoing.hide_missing(product.id, before, seen)  # gone, or unsellable now
        return CatalogPlan(outgoing, stored, stats)

    def _plan(
        self,
        product_id: str,
        key: str,
        item: dict[str, Any],
        previous: tuple[str, str] | None,
        mode: CatalogMode,
        outgoing: _Outgoing,
        stats: SyncStats,
    ) -> None:
        content, price_and_stock = fingerprint(item)
        if mode == "full" or previous is None or previous[0] != content:
            outgoing.ingest.append(item)
        elif previous[1] != price_and_stock:
            partial = {"item_id": item["item_id"], "locale": item["locale"]}
            partial.update({k: item[k] for k in PRICE_AND_STOCK if k in item})
            outgoing.update.append(partial)
        else:
            stats.skipped += 1
            return
        outgoing.prints[(product_id, key)] = (content, price_and_stock)

    async def _send(self, outgoing: _Outgoing, stats: SyncStats) -> set[str]:
        """Send; returns the keys Insider refused (they keep their old fingerprint).

        Insider names refused records by item_id only: every locale of it sent in that
        request counts as refused and is tried again next time (harmless)."""
        refused: set[str] = set()
        for items, write in (
            (outgoing.ingest, self._insider.catalog_ingest),
            (outgoing.update, self._insider.catalog_update),
        ):
            if not items:
                continue
            await self.ensure_locales()
            result: CatalogResult = await write(items)
            product_of = {key: product_id for product_id, key in outgoing.prints}
            keys_by_id: dict[str, list[str]] = {}
            for item in items:
                keys_by_id.setdefault(str(item["item_id"]), []).append(
                    f"{item['item_id']}@{item['locale']}"
                )
            refused_here: set[str] = set()
            for detail in result.details:
                for item_id in detail.document_ids:
                    for key in keys_by_id.get(item_id, []):
                        refused_here.add(key)
                        reason = f"{detail.field}: {detail.message}"
                        stats.reject(
                            Rejection(
                                record_id=key,
                                stage="insider",
                                reasons=[reason],
                                source_id=product_of.get(key),
                            )
                        )
            if refused_here:
                log.warning(
                    "catalog items refused by Insider",
                    details=[d.model_dump() for d in result.details],
                )
            refused |= refused_here
            stats.sent += len(items) - len(refused_here)
        return refused

    async def _existing(self, product_ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """(the products that exist, the ids of those that no longer do)."""
        found = await self._ct.find_in("products", product_ids, lambda q: f"id in ({q})")
        return found, sorted(set(product_ids) - {str(p["id"]) for p in found})

    async def refresh(self, product_ids: list[str], *, skus: Sequence[str] = ()) -> SyncStats:
        """Bring these products, and those holding `skus`, up to date; a product that no
        longer exists is hidden."""
        found, missing = await self._existing(product_ids) if product_ids else ([], [])
        if skus:
            holding = await products_with_skus(self._ct, list(skus))
            known = {str(p["id"]) for p in found}
            found += [p for p in holding if str(p["id"]) not in known]
            held = {str(v.get("sku")) for p in holding for v in _variants(p)}
            if unknown := sorted(set(skus) - held):
                log.info("no product holds these SKUs: nothing to refresh", skus=unknown[:20])
        stats = await self.send_products(found, mode="changes") if found else SyncStats()
        if missing:
            stats.add(await self._hide_deleted(missing))
        return stats

    async def hide_vanished(self, records: list[dict[str, Any]]) -> SyncStats:
        """Fingerprint records (what Insider holds per product): hide the items of products
        that no longer exist - deleted while no bridge received the ProductDeleted message."""
        visible = [
            str(record["key"])
            for record in records
            if any(pair[0] != HIDDEN for pair in (record.get("value") or {}).values())
        ]
        _, missing = await self._existing(visible) if visible else ([], [])
        stats = await self._hide_deleted(missing) if missing else SyncStats()
        stats.processed = len(records)
        stats.skipped = len(records) - len(missing)
        if missing:
            log.info("deleted products hidden in Insider", products=missing)
        return stats

    async def _hide_deleted(self, product_ids: list[str]) -> SyncStats:
        stats = SyncStats(processed=len(product_ids))
        stored = await self._fingerprints.load(product_ids)
        outgoing = _Outgoing()
        for product_id, record in stored.items():
            outgoing.hide_missing(product_id, record.prints, keep=set())
        refused = await self._send(outgoing, stats)
        await self._remember(stored, outgoing, refused)
        return stats

    async def send_for_skus(self, records: list[dict[str, Any]]) -> SyncStats:
        """Stock or a standalone price changed: re-check the products holding those SKUs."""
        skus = [str(e["sku"]) for e in records if e.get("sku")]
        products = await products_with_skus(self._ct, skus)
        return await self.send_products(products, mode="changes") if products else SyncStats()

    async def send_for_categories(self, categories: list[dict[str, Any]]) -> SyncStats:
        """A category changed (e.g. renamed): its products' taxonomy may have changed."""
        self._taxonomy.invalidate()
        affected = await self._taxonomy.with_descendants([str(c["id"]) for c in categories])
        products = await self._ct.find_in(
            "products", affected, lambda q: f"masterData(current(categories(id in ({q}))))"
        )
        return await self.send_products(products, mode="changes") if products else SyncStats()

    async def _remember(
        self, stored: dict[str, ProductPrints], outgoing: _Outgoing, refused: set[str]
    ) -> None:
        changed: dict[str, ProductPrints] = {}
        for (product_id, key), pair in outgoing.prints.items():
            if key in refused:
                continue
            record = changed.setdefault(
                product_id,
                ProductPrints(dict(stored[product_id].prints), stored[product_id].version),
            )
            record.prints[key] = pair
        # Concurrently, a few at a time: one write per product, and a realtime refresh
        # batches hundreds of products (one after the other they took seconds).
        slots = asyncio.Semaphore(FINGERPRINT_WRITES_IN_FLIGHT)

        async def save(product_id: str, record: ProductPrints) -> None:
            async with slots:
                await self._fingerprints.save(product_id, record)

        outcomes = await asyncio.gather(
            *(save(p, r) for p, r in changed.items()), return_exceptions=True
        )
        for outcome in outcomes:  # every write ended: the first failure goes up
            if isinstance(outcome, BaseException):
                raise outcome
