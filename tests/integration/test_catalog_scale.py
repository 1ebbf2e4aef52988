"""A catalog reconciliation's work per product does not grow with the catalog (issue 19).

Counted, not timed: our requests to commercetools, and the stored objects the commercetools
emulator evaluated query predicates on (its `scanned` counter), for one reconciliation of a
catalog and of one three times its size.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from activities.sync import path_of
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.insider.client import InsiderClient
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.catalog import CatalogMode, CatalogSender
from ct_insider.sync.fingerprints import FingerprintStore
from ct_insider.sync.pipeline import sync_window
from ct_insider.sync.reports import SyncStats
from ct_insider.sync.taxonomy import TaxonomyResolver
from ct_insider.sync.window import Window
from tests.conftest import Emulators

pytestmark = pytest.mark.integration

# Small batches, so even these small catalogs take several batches (the per-batch lookups
# are what grew with the catalog).
BATCH = 10


async def catalog_sync(emulators: Emulators, mode: CatalogMode) -> tuple[Counter[str], SyncStats]:
    """A full sync or reconciliation and its sweep, as the catalog backfill runs them:
    (requests to commercetools by method and resource, stats)."""
    requests: Counter[str] = Counter()

    async def count(request: httpx.Request) -> None:
        resource = request.url.path.split("/")[2] if request.url.path.count("/") > 1 else ""
        requests[f"{request.method} {resource}"] += 1

    async with (
        httpx.AsyncClient(timeout=60, event_hooks={"request": [count]}) as http,
        CommercetoolsClient(emulators.ct_settings(), http=http) as ct,
        InsiderClient(emulators.insider_settings()) as insider,
    ):
        sender = CatalogSender(
            ct, insider, TaxonomyResolver(ct), MappingConfig().catalog, FingerprintStore(ct)
        )

        async def send(records: list[dict[str, Any]]) -> SyncStats:
            return await sender.send_products(records, mode=mode)

        products = await sync_window(
            ct, "products", send, window=Window(), after_id=None, batch_size=BATCH
        )
        sweep = await sync_window(
            ct,
            path_of("catalog-sweep"),
            sender.hide_vanished,
            window=Window(),
            after_id=None,
            batch_size=BATCH,
        )
    products.stats.add(sweep.stats)
    return requests, products.stats


async def reconciliation_work(emulators: Emulators) -> tuple[int, int]:
    """(requests to commercetools, objects the emulator scanned) of a reconciliation."""
    scanned_before = emulators.ct_stats()["scanned"]
    requests, stats = await catalog_sync(emulators, "changes")
    assert stats.sent == 0  # nothing changed: a pure reconciliation
    assert requests["POST custom-objects"] == 0  # and no fingerprint written
    return sum(requests.values()), emulators.ct_stats()["scanned"] - scanned_before


async def test_reconciliation_work_per_product_does_not_grow_with_the_catalog(
    clean_emulators: Emulators,
) -> None:
    # Given a catalog of 30 products, synced once (its fingerprints stored)
    clean_emulators.seeder().catalog(30)
    await catalog_sync(clean_emulators, "full")
    # When it is reconciled
    small_requests, small_scanned = await reconciliation_work(clean_emulators)
    # And again once the catalog holds three times as many products, all synced
    clean_emulators.seeder().catalog(60)
    await catalog_sync(clean_emulators, "full")
    large_requests, large_scanned = await reconciliation_work(clean_emulators)

    # Then our requests grow with the catalog, not faster (a few are per run: token, tree)
    assert small_requests >= 30 / BATCH * 3  # fingerprints, stock, existence per batch
    assert large_requests <= 3 * small_requests
    # And so does the emulator's work: the fingerprint and existence lookups of a batch
    # read the listed objects only (they read the whole collection each, 2.5 times as many
    # objects per product at 90 as at 30 products, before issue 19)
    assert large_scanned <= 3 * small_scanned * 1.1
    assert large_scanned <= 90 * 6
