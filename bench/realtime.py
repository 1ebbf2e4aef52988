"""Realtime path: storefront and order events through the bridge into Insider.

    make bench            (or: .venv/bin/python -m bench.realtime [--events N] [--rate R]
                           [--temporal-address HOST:PORT])

Posts N events (default 10,000: storefront events plus OrderCreated messages) for 1,000
customers at a fixed rate (default 300/s, the target) to a `ct-insider bridge` process, with a
`ct-insider worker` process delivering the journeys. Prints the sustained rate, the
end-to-end latency (bridge accepted -> Insider emulator stored) p50/p95/p99, and the events
lost and duplicated. Targets (issue 4): >= 300 events/s, p99 < 2 s, 0 lost, 0 duplicated.
Before that it runs bench/temporal_floor.py with the same traffic (unless --no-floor or
--temporal-address) and prints the connector's figures against that floor.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench import temporal_floor
from bench.harness import (
    CpuSeconds,
    PeakRss,
    Stack,
    delivery_figures,
    local_stack,
    machine,
    save,
    worker_process,
)
from bench.loadgen import LeanClient, at_rate
from emulators.process import ManagedProcess, ct_insider_command, free_port

TOKEN = "bench-bridge-token-0123456789"
TARGET_RATE = 300
TARGET_P99 = 2.0
STOREFRONT_TYPES = [
    "product_view",
    "listing_view",
    "add_to_cart",
    "wishlist_add",
    "remove_from_cart",
]


@dataclass
class Sent:
    key: str  # the storefront event id, or the order's event_group_id
    path: str
    body: dict[str, Any]
    expected_events: int
    accepted_at: float | None = None


def workload(
    count: int, customers: list[tuple[str, str]], skus: list[str], orders: list[dict[str, Any]]
) -> list[Sent]:
    """~95% storefront events, ~5% OrderCreated messages, spread over the customers."""
    rng = random.Random(11)
    start = datetime.now(UTC) - timedelta(hours=1)
    order_messages = [
        Sent(
            key=str(order.get("orderNumber") or order["id"]),
            path="/webhooks/commercetools",
            body={
                "notificationType": "Message",
                "projectKey": "bench",
                "id": str(uuid.uuid4()),
                "version": 1,
                "sequenceNumber": 1,
                "resource": {"typeId": "order", "id": order["id"]},
                "resourceVersion": order["version"],
                "type": "OrderCreated",
                "order": order,
                "createdAt": order["createdAt"],
                "lastModifiedAt": order["createdAt"],
            },
            expected_events=len(order["lineItems"]),
        )
        for order in orders[: count // 20]
    ]
    storefront: list[Sent] = []
    for n in range(count - len(order_messages)):
        customer_id, _ = customers[n % len(customers)]
        kind = rng.choice(STOREFRONT_TYPES)
        event_id = str(uuid.uuid4())
        at = start + timedelta(seconds=n)  # distinct seconds keep each journey's order exact
        body = {
            "event_id": event_id,
            "type": kind,
            "occurred_at": at.isoformat(),
            "identity": {"customer_id": customer_id},
            "sku": rng.choice(skus),
            "price": "19.99",
            "currency": "USD",
            "locale": "en-US",
            "country": "US",
            "channel": "web",
            "cart_id": f"cart-{customer_id}",
        }
        storefront.append(Sent(event_id, "/events", body, expected_events=1))
    mixed = storefront + order_messages
    rng.shuffle(mixed)
    return mixed


async def post_at_rate(port: int, items: list[Sent], rate: float) -> tuple[float, int]:
    """Send each item at its slot; returns (seconds taken, non-2xx answers)."""
    failures = 0
    http = LeanClient("127.0.0.1", port, TOKEN)
    requests = [http.request(item.path, item.body) for item in items]

    async def send(index: int) -> None:
        nonlocal failures
        status = await http.send(requests[index])
        if status // 100 == 2:
            items[index].accepted_at = time.time()
        else:
            failures += 1

    seconds = await at_rate(len(items), rate, send)
    await http.close()
    return seconds, failures


def stored_keys(stack: Stack) -> list[tuple[str, float]]:
    """(key, stored at) for every event the Insider emulator holds."""
    events = httpx.get(f"{stack.insider_url}/_emulator/events", timeout=120).json()["events"]
    found = []
    for event in events:
        params = event.get("event_params") or {}
        if event["event_name"] == "purchase":
            key = str(params.get("event_group_id"))
        else:
            key = str((params.get("custom") or {}).get("event_id"))
        found.append((key, float(event["_stored_at"])))
    return found


async def run(
    count: int, rate: float, customers_count: int, temporal_address: str | None
) -> dict[str, Any]:
    with local_stack(Path(".dev/bench-logs/realtime"), temporal_address) as stack:
        seeder = stack.seeder()
        customers = seeder.customers(customers_count)
        skus = seeder.catalog(50)
        seeder.orders(count // 20, customers, skus)
        orders = list(stack.ct("GET", "orders?limit=500")["results"])
        items = workload(count, customers, skus, orders)
        task_queue = f"bench-{uuid.uuid4()}"
        bridge_port = free_port()
        bridge = ManagedProcess(
            "bridge",
            ct_insider_command("--log-level", "WARNING", "bridge"),
            health_url=f"http://127.0.0.1:{bridge_port}/healthz",
            env={
                **stack.worker_env(task_queue),
                "BRIDGE_TOKEN": TOKEN,
                "BRIDGE_PORT": str(bridge_port),
            },
            log_path=stack.logs / "bridge.log",
        )
        with worker_process(stack, task_queue) as worker, bridge:
            assert worker.process is not None
            processes = {**stack.servers, "worker": worker, "bridge": bridge}
            with PeakRss(worker.process.pid) as rss, CpuSeconds(processes) as cpu:
                seconds, refused = await post_at_rate(bridge_port, items, rate)
                expected = sum(item.expected_events for item in items)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if stack.insider_stats()["events"] >= expected:
                        break
                    await asyncio.sleep(0.5)
            await asyncio.sleep(2)  # late duplicates would show up now
            stored = stored_keys(stack)
    counts = Counter(key for key, _ in stored)
    first_store: dict[str, float] = {}
    for key, at in stored:
        first_store[key] = min(at, first_store.get(key, at))
    lost = sum(max(0, item.expected_events - counts[item.key]) for item in items)
    duplicated = sum(max(0, counts[item.key] - item.expected_events) for item in items)
    return {
        "events_posted": len(items),
        "insider_events_expected": sum(item.expected_events for item in items),
        "rate_offered": rate,
        "refused": refused,
        **delivery_figures(
            [item.accepted_at for item in items],
            [first_store.get(item.key) for item in items],
            seconds,
            cpu,
        ),
        "lost": lost,
        "duplicated": duplicated,
        "worker_peak_rss_mb": round(rss.peak_mb, 1),
    }


def cpu_total(result: dict[str, Any]) -> float:
    return float(sum(result["cpu_ms_per_event"].values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=float(TARGET_RATE))
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument(
        "--temporal-address",
        help="use this Temporal server (namespace default) instead of starting a dev server "
        "on this machine",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the Temporal floor run (bench/temporal_floor.py) done side by side",
    )
    args = parser.parse_args()
    # The floor needs a dev server of its own on this machine; against a remote Temporal
    # the comparison would not be like for like.
    floor = None
    if not args.no_floor and args.temporal_address is None:
        floor = uvloop.run(temporal_floor.run(args.events, args.rate, args.customers))
    # uvloop keeps the load generator's own CPU low (it shares the cores being measured).
    result = uvloop.run(run(args.events, args.rate, args.customers, args.temporal_address))
    info = machine()
    print(
        f"\nrealtime: {result['events_posted']:,} events for {args.customers:,} customers at "
        f"{args.rate:.0f}/s offered, on {info['cpu']} ({info['cores']} cores, "
        f"{info['memory_gib']} GiB; speed probe {info['speed_probe_seconds']} s):\n"
        f"  accepted by the bridge  {result['accepted_per_second']:>8} events/s "
        f"(refused {result['refused']})\n"
        f"  delivered to Insider    {result['delivered_per_second']:>8} events/s "
        f"(target >= {TARGET_RATE})\n"
        f"  latency p50/p95/p99     {result['latency_p50']} / {result['latency_p95']} / "
        f"{result['latency_p99']} s (target p99 < {TARGET_P99})\n"
        f"  p99 by tenth of run     {result['latency_p99_by_tenth_of_run']}\n"
        f"  lost / duplicated       {result['lost']} / {result['duplicated']} (target 0 / 0)\n"
        f"  worker peak RSS         {result['worker_peak_rss_mb']} MB\n"
        f"  CPU ms per event        {result['cpu_ms_per_event']}"
    )
    if floor is not None:
        result["temporal_floor"] = floor
        print(
            "  Temporal floor, the same traffic through no-op journeys (bench/temporal_floor.py),\n"
            f"  run just before: {temporal_floor.summary(floor)}\n"
            f"  connector / floor: delivered "
            f"{result['delivered_per_second'] / floor['delivered_per_second']:.2f}, CPU per event "
            f"{cpu_total(result) / cpu_total(floor):.2f}"
        )
    print(f"  saved to {save('realtime', result)}")
    ok = (
        result["delivered_per_second"] >= TARGET_RATE
        and result["latency_p99"] is not None
        and result["latency_p99"] < TARGET_P99
        and result["lost"] == 0
        and result["duplicated"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
