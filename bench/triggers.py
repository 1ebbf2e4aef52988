"""Journey triggers from commercetools itself (issue 17).

    make bench   (or: .venv/bin/python -m bench.triggers [--shape prices|carts] [--skus N]
                  [--rate R] [--delta-interval S] [--carts N] [--cart-rate R] [--delay S]
                  [--armed-only] [--temporal-address HOST:PORT])
    .venv/bin/python -m bench.triggers --shape held-carts [--held N] [--held-start carried|bridge]
                  [--held-delay D] [--carts N] [--cart-rate R] [--delay S]   (`make bench` too)

Each shape runs on a fresh stack (Temporal dev server, both emulators, a `ct-insider worker`
process; a `ct-insider bridge` process where it needs one) and has its own functions:
`run_<shape>`, `<shape>_report` and `<shape>_misses`, registered in `SHAPES` (prices here,
carts in bench/cart_triggers.py, held-carts in bench/held_carts.py: 100,000 open carts while
reminders fall due, ~25 minutes here on a quiet machine, so `--shape all` leaves it out and
`make bench` runs it apart).

**prices** (price drop and back in stock): N products (3 variants, 3 markets each) are synced
to Insider's catalog; then one SKU of each product changes, half of them their price in all
three markets (a drop: what Insider's price-drop starter watches), half their stock (0 -> a
few: back in stock), each change made in commercetools and at once announced to the bridge the
way a subscription does (one `ProductPriceChanged` per price, one `InventoryEntryQuantitySet`
without its SKU), at a fixed rate. Latency: commercetools answered the change -> the Insider
emulator holds the new value in every market of the SKU. Target: p99 < 5 s, every value
arrived, Insider's 60 catalog requests a minute never exceeded. Then the same number of
changes again with no message at all, caught by the catalog delta sync alone: its latency is
bounded by its interval and safety margin (reported with that bound; no target of its own).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.cart_triggers import carts_missed, carts_report, run_carts_from
from bench.harness import (
    BRIDGE_TOKEN,
    CpuSeconds,
    PeakRss,
    Stack,
    bridge_process,
    local_stack,
    machine,
    percentile,
    save,
    worker_process,
)
from bench.held_carts import add_arguments as add_held_arguments
from bench.held_carts import held_missed, held_report, run_held_from
from bench.loadgen import LeanClient, at_times
from ct_insider.config import TemporalSettings
from ct_insider.temporal import connect
from emulators.process import free_port
from starters.backfill import start_backfill
from starters.delta import start_delta
from workflows.backfill import BackfillInput
from workflows.delta import DeltaSyncInput

WEBHOOK = "/webhooks/commercetools"

# -- shape: prices ---------------------------------------------------------------------------

PRICE_TARGET_P99 = 5.0
CATALOG_REQUESTS_PER_MINUTE = 60  # Insider's limit, per account
# The markets of the default catalog mapping, by the price each seeded variant has.
MARKETS = {"USD": ("US", "en_US"), "EUR": ("DE", "de_DE"), "GBP": ("GB", "en_GB")}


@dataclass
class CatalogChangeSpec:
    """One SKU's change: what commercetools is told, and what Insider must then hold."""

    sku: str
    product_id: str
    kind: str  # "price" or "stock"
    # (item id, locale) -> {field: value} the Insider item must hold
    expected: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    changed_at: float | None = None  # unix seconds: commercetools answered the change
    refused: int = 0  # non-2xx answers of the bridge for its messages
    version: int = 0  # of the product (price) or inventory entry (stock) changed
    prices: list[dict[str, Any]] = field(default_factory=list)  # the SKU's, for a price change
    entry_id: str | None = None  # the SKU's inventory entry, for a stock change
    messages: list[dict[str, Any]] = field(default_factory=list)  # of its last change


class CommercetoolsWriter:
    """A retailer's app changing commercetools (one token, pooled connections)."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=256))
        self._token: str | None = None

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        if self._token is None:
            answer = await self._http.post(
                f"{self._stack.ct_url}/oauth/token",
                auth=(self._stack.client_id, self._stack.client_secret),
                data={
                    "grant_type": "client_credentials",
                    "scope": f"manage_project:{self._stack.project_key}",
                },
            )
            self._token = str(answer.json()["access_token"])
        response = await self._http.request(
            method,
            f"{self._stack.ct_url}/{self._stack.project_key}/{path}",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
        )
        response.raise_for_status()
        return response.json()

    async def aclose(self) -> None:
        await self._http.aclose()


def ct_message(
    resource_type: str, resource_id: str, message_type: str, version: int, **fields: Any
) -> dict[str, Any]:
    """A commercetools Message in the Platform format, as a subscription delivers it."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "notificationType": "Message",
        "projectKey": "bench",
        "id": str(uuid.uuid4()),
        "version": 1,
        "sequenceNumber": version,
        "resource": {"typeId": resource_type, "id": resource_id},
        "resourceVersion": version,
        "type": message_type,
        "createdAt": now,
        "lastModifiedAt": now,
        **fields,
    }


async def all_products(ct: CommercetoolsWriter) -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = []
    while True:
        page = await ct.call("GET", f"products?limit=500&offset={len(products)}&sort=id+asc")
        products.extend(page["results"])
        if len(page["results"]) < 500:
            return products


def plan_changes(
    products: list[dict[str, Any]], inventory: dict[str, dict[str, Any]], seed: int
) -> list[CatalogChangeSpec]:
    """One SKU of each product: odd positions change price, even ones stock."""
    rng = random.Random(seed)
    changes = []
    for n, product in enumerate(products):
        current = product["masterData"]["current"]
        variant = rng.choice([current["masterVariant"], *current["variants"]])
        change = CatalogChangeSpec(
            sku=variant["sku"], product_id=product["id"], kind="price" if n % 2 else "stock"
        )
        if change.kind == "price":
            change.version, change.prices = int(product["version"]), list(variant["prices"])
        else:
            entry = inventory[change.sku]
            change.entry_id, change.version = entry["id"], int(entry["version"])
        changes.append(change)
    return changes


def _variant(product: dict[str, Any], sku: str) -> dict[str, Any]:
    current = product["masterData"]["current"]
    variant: dict[str, Any] = next(
        v for v in [current["masterVariant"], *current["variants"]] if v["sku"] == sku
    )
    return variant


async def change_price(ct: CommercetoolsWriter, change: CatalogChangeSpec, cut: int) -> None:
    """Lower every market's price of the SKU by `cut` cents (published); the messages
    commercetools would send go to `change.messages`."""
    actions = []
    change.expected = {}
    for price in change.prices:
        currency = price["value"]["currencyCode"]
        cents = price["value"]["centAmount"] - cut
        actions.append(
            {
                "action": "changePrice",
                "priceId": price["id"],
                "price": {
                    "value": {"currencyCode": currency, "centAmount": cents},
                    "country": price.get("country"),
                },
                "staged": False,
            }
        )
        change.expected[(change.sku, MARKETS[currency][1])] = {"price": {currency: cents / 100}}
    changed = await ct.call(
        "POST", f"products/{change.product_id}", {"version": change.version, "actions": actions}
    )
    change.version = int(changed["version"])
    change.prices = list(_variant(changed, change.sku)["prices"])
    # commercetools sends one message per changed price.
    change.messages = [
        ct_message(
            "product",
            change.product_id,
            "ProductPriceChanged",
            change.version,
            newPrice=price,
            staged=False,
        )
        for price in change.prices
    ]


async def change_stock(ct: CommercetoolsWriter, change: CatalogChangeSpec, quantity: int) -> None:
    """Set the SKU's stock (its inventory entry, no supply channel: every market)."""
    assert change.entry_id is not None
    changed: dict[str, Any] = await ct.call(
        "POST",
        f"inventory/{change.entry_id}",
        {
            "version": change.version,
            "actions": [{"action": "changeQuantity", "quantity": quantity}],
        },
    )
    change.version = int(changed["version"])
    change.expected = {
        (change.sku, locale): {"stock_count": quantity, "in_stock": 1 if quantity > 0 else 0}
        for _, locale in MARKETS.values()
    }
    # InventoryEntryQuantitySet names no SKU unless asked to: the bridge reads the entry.
    change.messages = [
        ct_message(
            "inventory-entry",
            change.entry_id,
            "InventoryEntryQuantitySet",
            change.version,
            newQuantityOnStock=quantity,
            newAvailableQuantity=quantity,
        )
    ]


def catalog_items(stack: Stack) -> dict[tuple[str, str], dict[str, Any]]:
    body = httpx.get(f"{stack.insider_url}/_emulator/catalog", timeout=300).json()
    return {(item["item_id"], item["locale"]): item for item in body["items"]}


def arrival(
    change: CatalogChangeSpec, items: dict[tuple[str, str], dict[str, Any]]
) -> float | None:
    """When Insider came to hold every new value of the change (None: not yet)."""
    latest = 0.0
    for key, values in change.expected.items():
        item = items.get(key)
        if item is None or any(item.get(k) != v for k, v in values.items()):
            return None
        latest = max(latest, float(item["_updated_at"]))
    return latest


def catalog_requests(stack: Stack) -> int:
    return int(stack.insider_stats()["requests"].get("catalog", 0))


async def await_arrivals(
    stack: Stack, changes: list[CatalogChangeSpec], within: float
) -> dict[str, float]:
    """SKU -> when Insider held its new values, polling until all arrived or `within`."""
    deadline = time.monotonic() + within
    arrived: dict[str, float] = {}
    while True:
        items = await asyncio.to_thread(catalog_items, stack)
        for change in changes:
            at = arrival(change, items)
            if at is not None:
                arrived[change.sku] = at
        if len(arrived) == len(changes) or time.monotonic() > deadline:
            return arrived
        await asyncio.sleep(2)  # `_updated_at` dates each arrival; polling only finds it


def latency_figures(changes: list[CatalogChangeSpec], arrived: dict[str, float]) -> dict[str, Any]:
    latency = [
        arrived[c.sku] - c.changed_at
        for c in changes
        if c.sku in arrived and c.changed_at is not None
    ]
    figures: dict[str, Any] = {
        "changes": len(changes),
        "arrived": len(latency),
        "missing": len(changes) - len(latency),
    }
    for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        figures[f"latency_{name}"] = round(percentile(latency, share), 2) if latency else None
    # By tenth of the changes (in the order made): a latency growing along the run is a
    # throughput the path lacks, a flat one its delay.
    ordered = sorted(
        (c.changed_at, arrived[c.sku] - c.changed_at)
        for c in changes
        if c.sku in arrived and c.changed_at is not None
    )
    tenth = max(1, len(ordered) // 10)
    figures["latency_p99_by_tenth"] = [
        round(percentile([x for _, x in ordered[start : start + tenth]], 0.99), 2)
        for start in range(0, len(ordered), tenth)
    ]
    for kind in ("price", "stock"):
        own = [
            arrived[c.sku] - c.changed_at
            for c in changes
            if c.kind == kind and c.sku in arrived and c.changed_at is not None
        ]
        figures[f"latency_p99_{kind}"] = round(percentile(own, 0.99), 2) if own else None
    return figures


async def seed_catalog(stack: Stack, products: int) -> None:
    """N products, and an inventory entry holding 0 for each SKU (back in stock later)."""
    skus = await asyncio.to_thread(stack.seeder().catalog, products)
    entries = [{"sku": sku, "quantityOnStock": 0} for sku in skus]
    await asyncio.to_thread(stack.seeder().bulk, "inventory-entry", entries)


async def inventory_by_sku(ct: CommercetoolsWriter) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    while True:
        page = await ct.call("GET", f"inventory?limit=500&offset={len(found)}&sort=id+asc")
        found.update({entry["sku"]: entry for entry in page["results"]})
        if len(page["results"]) < 500:
            return found


async def through_bridge(
    ct: CommercetoolsWriter,
    changes: list[CatalogChangeSpec],
    bridge_port: int,
    rate: float,
    answers: dict[str, list[float]],
) -> float:
    """Make each change in commercetools and post its messages to the bridge, `rate` changes a
    second; returns the seconds taken. `answers` gets how long each post took to answer."""
    # The lean load generator of bench/realtime.py: httpx cost the bench more CPU than the
    # bridge (it shares the cores measured).
    http = LeanClient("127.0.0.1", bridge_port, BRIDGE_TOKEN, connections=128)

    async def post(change: CatalogChangeSpec, body: dict[str, Any]) -> None:
        started = time.monotonic()
        status = await http.send(http.request(WEBHOOK, body))
        answers[change.kind].append(time.monotonic() - started)
        if status // 100 != 2:
            change.refused += 1

    async def send(index: int) -> None:
        change = changes[index]
        if change.kind == "price":
            await change_price(ct, change, cut=50)
        else:
            await change_stock(ct, change, quantity=5)  # back in stock
        # From commercetools' answer (the emulator, loaded, queues the bench's own writes: that
        # wait is not the connector's); a refresh under way may read it a few ms before.
        change.changed_at = time.time()
        await asyncio.gather(*(post(change, message) for message in change.messages))

    try:
        return await at_times([n / rate for n in range(len(changes))], send)
    finally:
        await http.close()


async def through_delta(
    ct: CommercetoolsWriter, changes: list[CatalogChangeSpec], rate: float
) -> float:
    """The same SKUs changed again (a second price drop, stock 5 -> 0), no message sent."""

    async def send(index: int) -> None:
        change = changes[index]
        if change.kind == "price":
            await change_price(ct, change, cut=25)
        else:
            await change_stock(ct, change, quantity=0)
        change.changed_at = time.time()

    return await at_times([n / rate for n in range(len(changes))], send)


async def run_prices(args: argparse.Namespace) -> dict[str, Any]:
    products = args.skus  # one SKU changes per product: as many products as SKUs changed
    logs = Path(".dev/bench-logs/triggers-prices")
    with local_stack(logs, args.temporal_address) as stack:
        started = time.monotonic()
        await seed_catalog(stack, products)
        print(f"seeded {products:,} products in {time.monotonic() - started:.1f} s", flush=True)
        task_queue = f"bench-{uuid.uuid4()}"
        client = await connect(TemporalSettings(address=stack.temporal_address))
        env = stack.worker_env(task_queue)
        bridge_port = free_port()
        bridge = bridge_process(stack, env, bridge_port)
        ct = CommercetoolsWriter(stack)
        try:
            with worker_process(stack, task_queue, env=env) as worker, bridge:
                assert worker.process is not None
                started = time.monotonic()
                await (
                    await start_backfill(
                        client, task_queue, BackfillInput(target="catalog", catalog_mode="full")
                    )
                ).result()
                print(f"full catalog sync in {time.monotonic() - started:.1f} s", flush=True)
                changes = plan_changes(await all_products(ct), await inventory_by_sku(ct), seed=17)
                processes = {**stack.servers, "worker": worker, "bridge": bridge}

                # Round 1: through the bridge's messages.
                requests_before = catalog_requests(stack)
                refused_before = stack.insider_stats()["statuses"].get("catalog:429", 0)
                with PeakRss(worker.process.pid) as rss, CpuSeconds(processes) as cpu:
                    answers: dict[str, list[float]] = {"price": [], "stock": []}
                    posting = await through_bridge(ct, changes, bridge_port, args.rate, answers)
                    arrived = await await_arrivals(stack, changes, within=args.wait)
                bridge_figures = latency_figures(changes, arrived)
                first = min(c.changed_at for c in changes if c.changed_at is not None)
                last = max(arrived.values(), default=first)
                requests = catalog_requests(stack) - requests_before
                bridge_figures.update(
                    posting_seconds=round(posting, 2),
                    messages_refused=sum(c.refused for c in changes),
                    messages_posted=sum(len(a) for a in answers.values()),
                    bridge_answer_p50=round(
                        percentile(answers["price"] + answers["stock"], 0.5), 3
                    ),
                    bridge_answer_p99=round(
                        percentile(answers["price"] + answers["stock"], 0.99), 3
                    ),
                    bridge_answer_p99_price=round(percentile(answers["price"], 0.99), 3),
                    bridge_answer_p99_stock=round(percentile(answers["stock"], 0.99), 3),
                    insider_catalog_requests=requests,
                    insider_catalog_requests_per_minute=round(
                        requests / max(1e-9, last - first) * 60, 1
                    ),
                    insider_catalog_429=stack.insider_stats()["statuses"].get("catalog:429", 0)
                    - refused_before,
                    catalog_change_workflows=await catalog_workflows(
                        client, f"{task_queue}-journeys"
                    ),
                    worker_peak_rss_mb=round(rss.peak_mb, 1),
                    cpu_seconds=cpu.spent,
                )
                print(f"through the bridge: {bridge_figures}", flush=True)

                if args.no_delta:
                    return {
                        "products": products,
                        "skus_changed": len(changes),
                        "rate": args.rate,
                        "bridge": bridge_figures,
                        "delta": None,
                    }
                # Round 2: the catalog delta sync alone (no message reaches the bridge).
                delta = DeltaSyncInput(
                    entity="catalog",
                    watermark=datetime.now(UTC),
                    interval_seconds=args.delta_interval,
                )
                handle = await start_delta(client, task_queue, delta)
                requests_before = catalog_requests(stack)
                posting = await through_delta(ct, changes, args.rate)
                arrived = await await_arrivals(
                    stack,
                    changes,
                    within=delta.interval_seconds + delta.safety_margin_seconds + args.wait,
                )
                await handle.terminate("bench over")
                delta_figures = latency_figures(changes, arrived)
                delta_figures.update(
                    posting_seconds=round(posting, 2),
                    interval_seconds=delta.interval_seconds,
                    safety_margin_seconds=delta.safety_margin_seconds,
                    bound_seconds=delta.interval_seconds + delta.safety_margin_seconds,
                    insider_catalog_requests=catalog_requests(stack) - requests_before,
                )
        finally:
            await ct.aclose()
    return {
        "products": products,
        "skus_changed": len(changes),
        "rate": args.rate,
        "bridge": bridge_figures,
        "delta": delta_figures,
    }


async def catalog_workflows(client: Any, journey_queue: str) -> dict[str, Any]:
    """Catalog-change workflow runs on the journey queue, their history events, and what
    their refreshes took (activity started -> completed, seconds)."""
    runs = history = 0
    refreshes: list[float] = []
    async for execution in client.list_workflows(
        f"TaskQueue = '{journey_queue}' AND CtRunKind = 'catalog-change'"
    ):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        started: dict[int, float] = {}
        async for event in handle.fetch_history_events():
            history += 1
            when = event.event_time.ToDatetime().timestamp()
            if event.HasField("activity_task_started_event_attributes"):
                started[event.event_id] = when
            elif event.HasField("activity_task_completed_event_attributes"):
                attributes = event.activity_task_completed_event_attributes
                if attributes.started_event_id in started:
                    refreshes.append(when - started[attributes.started_event_id])
        runs += 1
    return {
        "runs": runs,
        "history_events": history,
        "refreshes": len(refreshes),
        "refresh_seconds_p50": round(percentile(refreshes, 0.5), 2) if refreshes else None,
        "refresh_seconds_max": round(max(refreshes), 2) if refreshes else None,
    }


def prices_misses(result: dict[str, Any]) -> list[str]:
    bridge = result["bridge"]
    misses = []
    if bridge["missing"]:
        misses.append(f"{bridge['missing']} changes never reached Insider through the bridge")
    if bridge["latency_p99"] is None or bridge["latency_p99"] >= PRICE_TARGET_P99:
        misses.append(f"p99 {bridge['latency_p99']} s >= {PRICE_TARGET_P99} s")
    if bridge["messages_refused"]:
        misses.append(f"{bridge['messages_refused']} messages refused by the bridge")
    if bridge["insider_catalog_429"]:
        misses.append(f"{bridge['insider_catalog_429']} catalog requests refused 429 by Insider")
    if result["delta"] and result["delta"]["missing"]:
        misses.append(f"{result['delta']['missing']} changes never reached Insider by the delta")
    return misses


def prices_report(result: dict[str, Any]) -> str:
    bridge, delta = result["bridge"], result["delta"]
    workflows = bridge["catalog_change_workflows"]
    delta_line = (
        f"  catalog delta alone     {delta['arrived']:,} of {delta['changes']:,} arrived; "
        f"p50 / p99 / max {delta['latency_p50']} / {delta['latency_p99']} / "
        f"{delta['latency_max']} s (bound: interval {delta['interval_seconds']} s + safety "
        f"margin {delta['safety_margin_seconds']} s + the window's run), "
        f"{delta['insider_catalog_requests']} catalog requests"
        if delta
        else "  catalog delta alone     not run (--no-delta)"
    )
    return "\n".join(
        [
            f"  through the bridge      {bridge['arrived']:,} of {bridge['changes']:,} arrived; "
            f"p50 / p95 / p99 / max {bridge['latency_p50']} / {bridge['latency_p95']} / "
            f"{bridge['latency_p99']} / {bridge['latency_max']} s "
            f"(target p99 < {PRICE_TARGET_P99}); p99 price {bridge['latency_p99_price']}, "
            f"stock {bridge['latency_p99_stock']} s; p99 by tenth {bridge['latency_p99_by_tenth']}",
            f"  Insider catalog         {bridge['insider_catalog_requests']} requests "
            f"({bridge['insider_catalog_requests_per_minute']}/min while arriving; limit "
            f"{CATALOG_REQUESTS_PER_MINUTE}/min), {bridge['insider_catalog_429']} refused 429",
            f"  Temporal                {workflows['runs']} catalog-change runs, "
            f"{workflows['history_events']} history events "
            f"({workflows['history_events'] / max(1, bridge['changes']):.1f} per change); "
            f"{workflows['refreshes']} refreshes of p50 {workflows['refresh_seconds_p50']} / max "
            f"{workflows['refresh_seconds_max']} s",
            f"  posting                 {bridge['posting_seconds']} s at {result['rate']}/s, "
            f"{bridge['messages_refused']} of {bridge['messages_posted']} messages refused, "
            f"bridge answered in p50 {bridge['bridge_answer_p50']} / p99 "
            f"{bridge['bridge_answer_p99']} s (p99 price {bridge['bridge_answer_p99_price']}, "
            f"stock {bridge['bridge_answer_p99_stock']} s); worker peak RSS "
            f"{bridge['worker_peak_rss_mb']} MB",
            f"  CPU seconds             {bridge['cpu_seconds']}",
            delta_line,
        ]
    )


# -- the shapes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerShape:
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]
    report: Callable[[dict[str, Any]], str]
    misses: Callable[[dict[str, Any]], list[str]]


SHAPES: dict[str, TriggerShape] = {
    "prices": TriggerShape(run_prices, prices_report, prices_misses),
    "carts": TriggerShape(run_carts_from, carts_report, carts_missed),
    # Not in "all": 100,000 held carts take ~25 minutes here (`make bench` runs it apart).
    "held-carts": TriggerShape(run_held_from, held_report, held_missed),
}
DEFAULT_SHAPES = ("prices", "carts")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--skus", type=int, default=1_000, help="prices: SKUs changed")
    parser.add_argument("--rate", type=float, default=200.0, help="prices: changes a second")
    parser.add_argument(
        "--wait", type=float, default=120.0, help="prices: seconds to wait for arrivals"
    )
    parser.add_argument(
        "--delta-interval",
        type=float,
        default=DeltaSyncInput.model_fields["interval_seconds"].default,
        help="prices: the catalog delta sync's interval (default: its default)",
    )
    parser.add_argument(
        "--no-delta", action="store_true", help="prices: skip the catalog delta round"
    )
    parser.add_argument("--carts", type=int, default=1_000, help="carts: open carts")
    parser.add_argument(
        "--cart-rate",
        type=float,
        default=10.0,
        help="carts: carts notified a second (50/s overloads 2 shared cores: bench/README.md)",
    )
    parser.add_argument("--delay", type=int, default=60, help="carts: reminder delay, seconds")
    parser.add_argument(
        "--armed-only",
        action="store_true",
        help="carts: stop once every cart is armed (memory and cost of N open carts)",
    )
    add_held_arguments(parser)
    parser.add_argument(
        "--temporal-address",
        help="use this Temporal server (namespace default) instead of a dev server here",
    )
    args = parser.parse_args()
    names = list(DEFAULT_SHAPES) if args.shape == "all" else [args.shape]
    results: dict[str, Any] = {}
    ok = True
    for name in names:
        shape = SHAPES[name]
        result = asyncio.run(shape.run(args))
        info = machine()
        misses = shape.misses(result)
        print(
            f"\ntriggers, shape {name} on {info['cpu']} ({info['cores']} cores, "
            f"{info['memory_gib']} GiB; speed probe {info['speed_probe_seconds']} s):\n"
            + shape.report(result)
            + "\n  targets: "
            + ("all met" if not misses else "MISSED " + "; ".join(misses)),
            flush=True,
        )
        results[name] = result
        ok = ok and not misses
    print(f"  saved to {save('triggers', results)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
