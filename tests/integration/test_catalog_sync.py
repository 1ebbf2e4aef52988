"""Catalog sync on the real worker: full sync per market, changes only, hiding, faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from starters.backfill import start_backfill
from tests.bridge_helpers import message, serving_bridge
from tests.conftest import Emulators, clock_past, eventually, running_delta, status_when
from workers.main import Workers
from workflows.backfill import BackfillInput, BackfillProgress

pytestmark = pytest.mark.integration


def catalog(emu: Emulators) -> dict[tuple[str, str], dict[str, Any]]:
    body = httpx.get(f"{emu.insider_url}/_emulator/catalog", timeout=60).json()
    return {(item["item_id"], item["locale"]): item for item in body["items"]}


def catalog_requests(emu: Emulators) -> int:
    stats = httpx.get(f"{emu.insider_url}/_emulator/stats", timeout=60).json()
    return int(stats["requests"].get("catalog", 0))


def set_usd_price(emu: Emulators, product: dict[str, Any], cents: int) -> dict[str, Any]:
    """Change the master variant's first (USD, US) price, published."""
    price_id = product["masterData"]["current"]["masterVariant"]["prices"][0]["id"]
    price = {"value": {"currencyCode": "USD", "centAmount": cents}, "country": "US"}
    changed: dict[str, Any] = emu.ct(
        "POST",
        f"products/{product['id']}",
        {
            "version": product["version"],
            "actions": [
                {"action": "changePrice", "priceId": price_id, "price": price, "staged": False}
            ],
        },
    )
    return changed


async def full_sync(client: Client, workers: Workers) -> BackfillProgress:
    handle = await start_backfill(client, workers.task_queue, BackfillInput(target="catalog"))
    return await handle.result()


async def synced_catalog(emu: Emulators, client: Client, workers: Workers, products: int) -> None:
    """Given `products` seeded products (3 variants each) that Insider's catalog holds."""
    emu.seeder().catalog(products)
    await full_sync(client, workers)


async def test_full_sync_mirrors_commercetools_in_three_markets(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    skus = emu.seeder().catalog(20)
    emu.ct("POST", "inventory", {"sku": skus[0], "quantityOnStock": 7})
    emu.ct("POST", "inventory", {"sku": skus[1], "quantityOnStock": 0})

    result = await full_sync(client, worker)

    phase, sweep = result.phases
    assert (phase.stats.processed, phase.stats.sent, phase.stats.rejected) == (20, 180, 0)
    assert (sweep.entity, sweep.stats.processed, sweep.stats.sent) == ("catalog-sweep", 20, 0)
    items = catalog(emu)
    assert len(items) == 60 * 3
    locales = httpx.get(f"{emu.insider_url}/_emulator/catalog", timeout=60).json()["locales"]
    assert {"en_US", "de_DE", "en_GB"} <= set(locales)
    # field by field against commercetools
    product = emu.ct("GET", "products?limit=1&sort=id+asc")["results"][0]["masterData"]["current"]
    variant = product["masterVariant"]
    prices = {p["value"]["currencyCode"]: p["value"]["centAmount"] / 100 for p in variant["prices"]}
    for locale, currency, language, name_lang in (
        ("en_US", "USD", "en", "en"),
        ("de_DE", "EUR", "de", "de"),
        ("en_GB", "GBP", "en", "en"),
    ):
        item = items[(variant["sku"], locale)]
        assert item["name"] == product["name"][name_lang]
        assert item["url"] == f"https://shop.example.com/{language}/p/{product['slug'][name_lang]}"
        assert item["image_url"] == variant["images"][0]["url"]
        assert item["price"] == {currency: prices[currency]}
        assert item["original_price"] == {currency: prices[currency]}
        assert (
            item["groupcode"] == emu.ct("GET", "products?limit=1&sort=id+asc")["results"][0]["key"]
        )
        assert item["category"][0] in ("Apparel", "Bekleidung", "Accessories", "Accessoires")
    assert items[(skus[0], "en_US")]["stock_count"] == 7
    assert items[(skus[0], "en_US")]["in_stock"] == 1
    assert items[(skus[1], "de_DE")]["in_stock"] == 0


async def test_delta_sends_only_what_changed_and_hides_what_is_gone(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    await synced_catalog(emu, client, worker, products=5)
    before = catalog_requests(emu)
    # (past the delta's safety margin of 0.3 s: its first window holds every product)
    await clock_past(datetime.now(UTC) + timedelta(seconds=0.5))

    async with running_delta(client, worker.task_queue, "catalog") as handle:
        # Given no change in commercetools, a window over every product sends nothing
        first = await status_when(handle, lambda s: s.windows >= 1)
        assert first.last_run is not None
        assert first.last_run.stats.sent == 0
        # 45 items through the products pass, and again through the categories pass (the
        # seeded categories are new too); none differs from what Insider holds.
        assert first.last_run.stats.skipped == 90
        assert catalog_requests(emu) == before

        # When a price changes, stock is set and a product is unpublished
        products = emu.ct("GET", "products?sort=id+asc")["results"]
        priced, unpublished = products[0], products[1]
        sku = priced["masterData"]["current"]["masterVariant"]["sku"]
        set_usd_price(emu, priced, 999)
        stocked = products[2]["masterData"]["current"]["variants"][-1]["sku"]  # a third product
        emu.ct("POST", "inventory", {"sku": stocked, "quantityOnStock": 3})
        emu.ct(
            "POST",
            f"products/{unpublished['id']}",
            {"version": unpublished["version"], "actions": [{"action": "unpublish"}]},
        )
        gone = unpublished["masterData"]["current"]["masterVariant"]["sku"]

        # Then each reaches Insider through the delta: price, stock, and hidden items
        def arrived() -> bool:
            items = catalog(emu)
            return (
                items[(sku, "en_US")]["price"] == {"USD": 9.99}
                and items[(stocked, "de_DE")].get("stock_count") == 3
                and items[(gone, "en_GB")]["is_status_passive"] == 1
            )

        await status_when(handle, lambda _: arrived())
        items = catalog(emu)
        assert items[(sku, "en_US")]["original_price"] == {"USD": 9.99}
        assert items[(sku, "de_DE")]["price"] != {"USD": 9.99}  # other markets untouched
        assert items[(gone, "en_GB")]["in_stock"] == 0

        # When a field the catalog does not map changes, nothing is sent
        requests = catalog_requests(emu)
        current = emu.ct("GET", f"products/{products[2]['id']}")
        emu.ct(
            "POST",
            f"products/{current['id']}",
            {
                "version": current["version"],
                "actions": [
                    {"action": "setMetaTitle", "metaTitle": {"en": "SEO"}, "staged": False}
                ],
            },
        )
        windows = (await status_when(handle, lambda _: True)).windows
        await status_when(handle, lambda s: s.windows >= windows + 3)
        assert catalog_requests(emu) == requests

        # When a category is renamed, its products' taxonomy follows
        category = emu.ct("GET", "categories?where=key%3D%22apparel%22")["results"][0]
        emu.ct(
            "POST",
            f"categories/{category['id']}",
            {
                "version": category["version"],
                "actions": [{"action": "changeName", "name": {"en": "Clothing", "de": "Kleidung"}}],
            },
        )
        await status_when(
            handle,
            lambda _: any(i.get("category", [""])[0] == "Clothing" for i in catalog(emu).values()),
        )


async def test_reconciliation_hides_products_deleted_while_no_message_arrived(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    await synced_catalog(emu, client, worker, products=4)
    # Given a product deleted in commercetools with no bridge listening
    doomed = emu.ct("GET", "products?sort=id+asc")["results"][1]
    emu.ct("DELETE", f"products/{doomed['id']}?version={doomed['version']}")
    doomed_skus = [doomed["masterData"]["current"]["masterVariant"]["sku"]] + [
        v["sku"] for v in doomed["masterData"]["current"]["variants"]
    ]

    # When the reconciliation runs
    reconcile = BackfillInput(target="catalog", catalog_mode="changes")
    result = await (await start_backfill(client, worker.task_queue, reconcile)).result()

    # Then every item of that product is hidden in every market, and nothing else changed
    products, sweep = result.phases
    assert (products.stats.processed, products.stats.sent) == (3, 0)
    assert (sweep.stats.processed, sweep.stats.sent) == (4, len(doomed_skus) * 3)
    items = catalog(emu)
    for (item_id, _), item in items.items():
        passive = item_id in doomed_skus
        assert item["is_status_passive"] == (1 if passive else 0), item_id
        assert item["in_stock"] == (0 if passive else 1), item_id

    # And a second reconciliation finds nothing to do, without reading hidden products again
    requests = catalog_requests(emu)
    again = await (await start_backfill(client, worker.task_queue, reconcile)).result()
    assert [p.stats.sent for p in again.phases] == [0, 0]
    assert again.phases[1].stats.skipped == 4
    assert catalog_requests(emu) == requests


async def test_rate_limits_and_refused_items_lose_nothing(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    emu.seeder().catalog(10)
    products = emu.ct("GET", "products?sort=id+asc")["results"]
    broken = products[0]
    # An image URL Insider refuses (not http/https): the mapping finds no image it can show,
    # and reports the item per market (before Insider sees it).
    master = broken["masterData"]["current"]["masterVariant"]
    emu.ct(
        "POST",
        f"products/{broken['id']}",
        {
            "version": broken["version"],
            "actions": [
                {
                    "action": "removeImage",
                    "sku": master["sku"],
                    "imageUrl": master["images"][0]["url"],
                    "staged": False,
                },
                {
                    "action": "addExternalImage",
                    "sku": master["sku"],
                    "image": {
                        "url": "ftp://images.example.com/x.jpg",
                        "dimensions": {"w": 1, "h": 1},
                    },
                    "staged": False,
                },
            ],
        },
    )
    emu.insider_faults(rate_limited_rate=0.3, retry_after_seconds=1)

    result = await full_sync(client, worker)

    phase, _ = result.phases
    refused = {r.record_id for r in phase.stats.rejections}
    assert refused == {f"{master['sku']}@{locale}" for locale in ("en_US", "de_DE", "en_GB")}
    assert all(r.stage == "mapping" for r in phase.stats.rejections)
    assert all(r.reasons[0].startswith("no image for ") for r in phase.stats.rejections)
    assert phase.stats.sent == 90 - 3
    assert len(catalog(emu)) == 90 - 3


async def test_realtime_messages_update_the_catalog_within_seconds(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    await synced_catalog(emu, client, worker, products=4)
    products = emu.ct("GET", "products?sort=id+asc")["results"]
    priced, unpublished = products[0], products[1]
    sku = priced["masterData"]["current"]["masterVariant"]["sku"]
    stocked = products[2]["masterData"]["current"]["variants"][-1]["sku"]  # a third product
    gone = unpublished["masterData"]["current"]["masterVariant"]["sku"]
    async with serving_bridge(client, worker.journey_task_queue, emu) as bridge:
        before = catalog_requests(emu)
        # When a price changes (announced five times in a burst), stock is set, and a
        # product is unpublished
        changed = set_usd_price(emu, priced, 777)
        for n in range(5):
            await bridge.post(
                "/webhooks/commercetools",
                message(
                    "product",
                    priced["id"],
                    "ProductPriceChanged",
                    sequence=n + 2,
                    version=changed["version"],
                    staged=False,
                ),
            )
        entry = emu.ct("POST", "inventory", {"sku": stocked, "quantityOnStock": 4})
        await bridge.post(
            "/webhooks/commercetools",
            message("inventory-entry", entry["id"], "InventoryEntryQuantitySet", sku=stocked),
        )
        emu.ct(
            "POST",
            f"products/{unpublished['id']}",
            {"version": unpublished["version"], "actions": [{"action": "unpublish"}]},
        )
        await bridge.post(
            "/webhooks/commercetools",
            message("product", unpublished["id"], "ProductUnpublished"),
        )
        staged_only = await bridge.post(
            "/webhooks/commercetools",
            message("product", priced["id"], "ProductPriceChanged", staged=True),
        )
        assert staged_only.json()["status"] == "ignored"
        # ... and a fourth product is deleted
        deleted = products[3]
        removed_sku = deleted["masterData"]["current"]["masterVariant"]["sku"]
        current = emu.ct("GET", f"products/{deleted['id']}")
        emu.ct("DELETE", f"products/{deleted['id']}?version={current['version']}")
        await bridge.post(
            "/webhooks/commercetools", message("product", deleted["id"], "ProductDeleted")
        )

        # Then Insider's catalog follows within seconds
        def arrived() -> bool:
            items = catalog(emu)
            return (
                items[(sku, "en_US")]["price"] == {"USD": 7.77}
                and items[(stocked, "de_DE")].get("stock_count") == 4
                and items[(gone, "de_DE")]["is_status_passive"] == 1
                and items[(removed_sku, "en_GB")]["is_status_passive"] == 1
            )

        await eventually(arrived, within=15)
    # ... with the burst on one product coalesced: four refreshes, at most four update requests
    assert catalog_requests(emu) - before <= 4


async def test_a_standalone_price_change_reaches_the_catalog_through_the_bridge(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    emu.seeder().catalog(2)
    # Given a variant priced by standalone prices only (its embedded prices removed)
    product = emu.ct("GET", "products?sort=id+asc")["results"][0]
    variant = product["masterData"]["current"]["masterVariant"]
    sku = variant["sku"]
    emu.ct(
        "POST",
        f"products/{product['id']}",
        {
            "version": product["version"],
            "actions": [
                {"action": "removePrice", "priceId": price["id"], "staged": False}
                for price in variant["prices"]
            ],
        },
    )
    prices = {
        currency: emu.ct(
            "POST",
            "standalone-prices",
            # active given explicitly: commercetools-mock defaults it to false, the API to true
            {"sku": sku, "value": {"currencyCode": currency, "centAmount": 1234}, "active": True},
        )
        for currency in ("USD", "EUR", "GBP")
    }
    await full_sync(client, worker)
    assert catalog(emu)[(sku, "en_US")]["price"] == {"USD": 12.34}

    async with serving_bridge(client, worker.journey_task_queue, emu) as bridge:
        # When the USD price changes and its message (which names no SKU) arrives
        usd = prices["USD"]
        changed = emu.ct(
            "POST",
            f"standalone-prices/{usd['id']}",
            {
                "version": usd["version"],
                "actions": [
                    {"action": "changeValue", "value": {"currencyCode": "USD", "centAmount": 555}}
                ],
            },
        )
        answer = await bridge.post(
            "/webhooks/commercetools",
            message(
                "standalone-price",
                usd["id"],
                "StandalonePriceValueChanged",
                version=changed["version"],
                value=changed["value"],
                staged=False,
            ),
        )
        assert (answer.status_code, answer.json()["status"]) == (202, "accepted"), answer.text

        # Then the product holding the SKU is refreshed: the new price in its market only
        await eventually(lambda: catalog(emu)[(sku, "en_US")]["price"] == {"USD": 5.55}, within=15)
        items = catalog(emu)
        assert items[(sku, "de_DE")]["price"] == {"EUR": 12.34}
        assert items[(sku, "en_GB")]["price"] == {"GBP": 12.34}
