"""Faults on the realtime path: storefront events and commercetools subscription messages
posted to a `ct-insider bridge` process, delivered by the journey shards on worker
processes."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.backfill import connect_when_up
from bench.cart_triggers import created, make_carts
from bench.harness import BRIDGE_TOKEN, bridge_process
from bench.traffic import order_message
from emulators.process import ManagedProcess, free_port, temporal_dev_server_command
from reliability.backfill_faults import insider_waits
from reliability.framework import (
    Row,
    ScenarioFailed,
    Suite,
    Tally,
    expected_purchases,
    kill,
    stored_event_keys,
    wait_for,
)

SHARDS = 4
# A dead worker's shard task is handed to another worker once it times out (the shard
# workflow's task timeout, 20 s), plus a restarted process's start.
TASK_TIMEOUT_SECONDS = 20.0
RESTART_ALLOWANCE_SECONDS = 30.0
SETTLE_LIMIT_SECONDS = 180.0


@dataclass
class RealtimeStack:
    suite: Suite
    task_queue: str
    bridge_url: str
    workers: list[ManagedProcess]

    async def post(self, http: httpx.AsyncClient, path: str, body: Any) -> int:
        answer = await http.post(
            f"{self.bridge_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"},
        )
        return answer.status_code


@asynccontextmanager
async def realtime_stack(
    suite: Suite, extra_env: dict[str, str] | None = None
) -> AsyncIterator[RealtimeStack]:
    """A bridge process and the suite's worker processes on a task queue of their own
    (`extra_env` adds settings to both)."""
    task_queue = f"reliability-{uuid.uuid4()}"
    env = {
        **suite.stack.worker_env(task_queue),
        "TEMPORAL_JOURNEY_SHARDS": str(SHARDS),
        **(extra_env or {}),
    }
    port = free_port()
    with (
        suite.running_workers(task_queue, env) as workers,
        bridge_process(suite.stack, env, port, log_name="reliability-bridge"),
    ):
        yield RealtimeStack(suite, task_queue, f"http://127.0.0.1:{port}", workers)


def storefront_events(
    count: int,
    visitors: int,
    skus: list[str],
    types: tuple[str, ...] = ("product_view", "add_to_cart", "listing_view"),
) -> list[dict[str, Any]]:
    rng = random.Random(5)
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "type": rng.choice(types),
            "occurred_at": (now - timedelta(seconds=count - n)).isoformat(),
            "identity": {"anonymous_id": f"visitor-{rng.randrange(visitors)}"},
            "sku": rng.choice(skus),
            "price": "19.99",
            "currency": "USD",
            "locale": "en-US",
            "country": "US",
            "channel": "web",
        }
        for n in range(count)
    ]


def seeded_orders(suite: Suite, count: int, skus: list[str]) -> list[dict[str, Any]]:
    seeder = suite.stack.seeder()
    seeder.orders(count, seeder.customers(max(1, count // 2), prefix="rt"), skus)
    orders: list[dict[str, Any]] = suite.stack.ct("GET", f"orders?limit={count}")["results"]
    if len(orders) != count:
        raise ScenarioFailed(f"seeded {len(orders)} orders of {count}")
    return orders


EVENTS = 1_500
PER_REQUEST = 25
ORDERS = 30
POST_SECONDS = 15.0
CARTS = 40
# Cart events on; the carts' reminders far beyond the scenario (only their items count).
CART_SETTINGS = {
    "CART_EVENTS_ENABLED": "true",
    "CART_REMINDER_DELAYS": "3600s",
    "CART_COALESCE_SECONDS": "1",
}
# Insider's processing time at the kill.
KILL_LATENCY_MS = 2_000


async def worker_killed_while_events_flow(suite: Suite) -> Row:
    suite.reset()
    skus = suite.stack.seeder().catalog(10)
    orders = seeded_orders(suite, ORDERS, skus)
    # (With cart events on, a storefront's add_to_cart is left to the cart's own changes.)
    events = storefront_events(EVENTS, 300, skus, ("product_view", "listing_view"))
    carts = await make_carts(suite.stack, CARTS, skus)
    # Storefront batches, order messages and cart changes, interleaved, posted over
    # POST_SECONDS.
    requests: list[tuple[str, Any, Counter[str]]] = [
        (
            "/events",
            {"events": events[n : n + PER_REQUEST]},
            Counter(e["event_id"] for e in events[n : n + PER_REQUEST]),
        )
        for n in range(0, EVENTS, PER_REQUEST)
    ]
    for n, order in enumerate(orders):
        requests.insert(
            (n * len(requests)) // ORDERS,
            ("/webhooks/commercetools", order_message(order), expected_purchases([order])),
        )
    for n, cart in enumerate(carts):
        # Each line of a new cart is one item_added_to_cart, its id naming the cart's version.
        added = Counter(
            f"cart:{cart['id']}@{cart['version']}:{line['variant']['sku']}"
            for line in cart["lineItems"]
        )
        requests.insert(
            (n * len(requests)) // CARTS, ("/webhooks/commercetools", created(cart), added)
        )
    expected: Counter[str] = Counter()
    refused = 0
    async with (
        realtime_stack(suite, CART_SETTINGS) as stack,
        httpx.AsyncClient(timeout=30) as http,
    ):
        kill_at = int(len(requests) * 0.4)
        posted = 0

        async def post_all() -> None:
            nonlocal posted, refused
            for path, body, keys in requests:
                status = await stack.post(http, path, body)
                if status // 100 == 2:
                    expected.update(keys)
                else:
                    refused += 1
                posted += 1
                await asyncio.sleep(POST_SECONDS / len(requests))

        posting = asyncio.create_task(post_all())
        await wait_for(lambda: posted >= kill_at, 60, what=f"{kill_at} requests posted")
        # Then the first worker dies in the middle of the stream, while Insider processes
        # one of its upserts (slow for a moment, so the kill lands in it) ...
        suite.insider_faults(latency_ms=KILL_LATENCY_MS)
        await wait_for(
            lambda: suite.insider_stats()["in_flight"].get("upsert", 0),
            30,
            what="an upsert in flight",
            every=0.05,
        )
        upserts_in_flight = int(suite.insider_stats()["in_flight"].get("upsert", 0))
        kill(stack.workers[0])
        not_yet_stored = sum(expected.values()) - sum(stored_event_keys(suite).values())
        killed_after = posted
        suite.insider_faults()
        await asyncio.sleep(1.0)
        # ... and is started again while events keep coming.
        await asyncio.to_thread(stack.workers[0].start)
        restarted_at = time.monotonic()
        await posting
        await wait_for(
            lambda: sum(stored_event_keys(suite).values()) >= sum(expected.values()),
            SETTLE_LIMIT_SECONDS,
            what="every acknowledged event in Insider",
        )
        recovery = time.monotonic() - restarted_at
        await asyncio.sleep(2.0)  # a late duplicate would show now
        timed_out = await timed_out_activities(suite, stack.task_queue)
    rest = POST_SECONDS * (1 - killed_after / len(requests))
    # Settling the deliveries the kill cut short reads profiles; the restarted process does
    # not know what the dead one spent of the account's quota, and Insider answers 429 until
    # the minute has passed.
    waits, waits_reason = insider_waits(suite)
    return Row(
        "worker SIGKILLed while storefront events, cart changes and order messages flow, restarted",
        Tally.of(expected, stored_event_keys(suite)),
        f"SIGKILL with {upserts_in_flight} upsert(s) in flight at Insider, after "
        f"{killed_after} of {len(requests)} requests, {max(0, not_yet_stored)} events "
        f"acknowledged and not yet stored; {refused} requests refused",
        upserts_in_flight > 0,
        recovery,
        rest + TASK_TIMEOUT_SECONDS + RESTART_ALLOWANCE_SECONDS + waits,
        f"{rest:.0f} s posting left + {TASK_TIMEOUT_SECONDS:g} s shard task timeout + "
        f"{RESTART_ALLOWANCE_SECONDS:g} s restart + {waits_reason}",
        [
            f"Insider imposed {profile_retry_after(suite):g} s of Retry-After on profile reads",
            "timed out on the dead worker: "
            + (", ".join(f"{n} x {name}" for name, n in sorted(timed_out.items())) or "nothing"),
            f"{len(events):,} storefront events, {CARTS} new carts "
            f"({sum(len(c['lineItems']) for c in carts)} lines), {ORDERS} OrderCreated messages",
        ],
    )


def profile_retry_after(suite: Suite) -> float:
    return float(suite.insider_stats()["imposed_wait_seconds"].get("profile", 0))


async def timed_out_activities(suite: Suite, task_queue: str) -> Counter[str]:
    """Activities (and workflow tasks) whose attempt timed out, by type, in every workflow on
    the scenario's queues: what a dead worker left for the server to notice."""
    found: Counter[str] = Counter()
    query = f"TaskQueue = '{task_queue}' OR TaskQueue = '{task_queue}-journeys'"
    async for execution in suite.client.list_workflows(query):
        handle = suite.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        scheduled: dict[int, str] = {}
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                attributes = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attributes.activity_type.name
            elif event.HasField("activity_task_timed_out_event_attributes"):
                timed = event.activity_task_timed_out_event_attributes
                found[scheduled.get(timed.scheduled_event_id, "activity")] += 1
            elif event.HasField("workflow_task_timed_out_event_attributes"):
                found[f"workflow task of {execution.workflow_type}"] += 1
    return found


def customer_message(
    resource: dict[str, Any], message_type: str, version: int, **fields: Any
) -> dict[str, Any]:
    when = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "notificationType": "Message",
        "projectKey": resource["__project"],
        "id": str(uuid.uuid4()),
        "version": 1,
        "sequenceNumber": version,
        "resource": {"typeId": "customer", "id": resource["id"]},
        "resourceVersion": version,
        "type": message_type,
        "createdAt": when,
        "lastModifiedAt": when,
        **fields,
    }


def without_payload(delivery: dict[str, Any], *payload_fields: str) -> dict[str, Any]:
    """The delivery as commercetools sends an oversize one: the payload left out."""
    kept = {k: v for k, v in delivery.items() if k not in payload_fields}
    return {
        **kept,
        "payloadNotIncluded": {"reason": "payload too large", "payloadType": delivery["type"]},
    }


REDELIVERED_CUSTOMERS = 20
REDELIVERED_ORDERS = 20
REDELIVERED_EVENTS = 300
COPIES = 3


async def every_message_three_times_out_of_order(suite: Suite) -> Row:
    suite.reset()
    rng = random.Random(3)
    skus = suite.stack.seeder().catalog(5)
    orders = seeded_orders(suite, REDELIVERED_ORDERS, skus)
    customers = suite.stack.seeder().customers(REDELIVERED_CUSTOMERS, prefix="redelivered")
    # Each customer renamed twice after creation: three versions, each with its message.
    deliveries: list[dict[str, Any]] = []
    latest_names: dict[str, str] = {}
    for customer_id, email in customers:
        customer = suite.stack.ct("GET", f"customers/{customer_id}")
        customer["__project"] = suite.stack.project_key
        deliveries.append(
            customer_message(
                customer,
                "CustomerCreated",
                customer["version"],
                customer={"id": customer_id, "email": email},
            )
        )
        for rename in (1, 2):
            name = f"Name{rename}-{customer_id[:6]}"
            customer = suite.stack.ct(
                "POST",
                f"customers/{customer_id}",
                {
                    "version": customer["version"],
                    "actions": [{"action": "setFirstName", "firstName": name}],
                },
            )
            customer["__project"] = suite.stack.project_key
            deliveries.append(
                customer_message(
                    customer, "CustomerFirstNameSet", customer["version"], firstName=name
                )
            )
            latest_names[email] = name
    for order in orders:
        deliveries.append(order_message(order))
    # A third of the messages arrive without their payload (the bridge reads commercetools).
    deliveries = [
        without_payload(d, "order", "customer", "firstName") if rng.random() < 1 / 3 else d
        for d in deliveries
    ]
    events = storefront_events(REDELIVERED_EVENTS, 50, skus)
    requests: list[tuple[str, Any]] = [("/webhooks/commercetools", d) for d in deliveries]
    requests += [("/events", {"events": events[n : n + 10]}) for n in range(0, len(events), 10)]
    # Every request three times, in a random order.
    posted = [r for r in requests for _ in range(COPIES)]
    rng.shuffle(posted)
    # Purchases, storefront events, and the sign-up event each CustomerCreated adds (keyed
    # by the message's id).
    expected = (
        expected_purchases(orders)
        + Counter(e["event_id"] for e in events)
        + Counter(d["id"] for d in deliveries if d["type"] == "CustomerCreated")
    )
    refused = 0
    async with realtime_stack(suite) as stack, httpx.AsyncClient(timeout=30) as http:
        started = time.monotonic()
        for group in range(0, len(posted), 8):
            answers = await asyncio.gather(
                *(stack.post(http, path, body) for path, body in posted[group : group + 8])
            )
            refused += sum(1 for status in answers if status // 100 != 2)
        if refused:
            raise ScenarioFailed(f"{refused} of {len(posted)} deliveries refused")
        await wait_for(
            lambda: sum(stored_event_keys(suite).values()) >= sum(expected.values()),
            SETTLE_LIMIT_SECONDS,
            what="every event in Insider",
        )

        def names_now() -> dict[str, str]:
            return {
                str(user["identifiers"].get("email")): str(user["attributes"].get("name"))
                for user in suite.insider_users()
                if user["identifiers"].get("email") in latest_names
            }

        await wait_for(
            lambda: names_now() == latest_names,
            SETTLE_LIMIT_SECONDS,
            what="every customer's latest name in Insider",
        )
        settled = time.monotonic() - started
        await asyncio.sleep(2.0)  # a late duplicate would show now
        stale = sum(1 for email, name in names_now().items() if latest_names[email] != name)
        bridge_stats = (await http.get(f"{stack.bridge_url}/stats")).json()
    without = sum(1 for d in deliveries if "payloadNotIncluded" in d)
    tally = Tally.of(expected, stored_event_keys(suite))
    return Row(
        "every subscription message and storefront request delivered 3 times, out of order, "
        "a third without payload",
        tally,
        f"{len(posted)} deliveries ({len(requests)} unique, {without} messages without "
        f"payload); {stale} of {len(latest_names)} profiles stale; bridge accepted "
        f"{sum(v for k, v in bridge_stats.items() if k.startswith('accepted:'))} messages",
        len(posted) == COPIES * len(requests) and without > 0 and stale == 0,
        settled,
        SETTLE_LIMIT_SECONDS,
        "settle limit",
        [
            f"{REDELIVERED_CUSTOMERS} customers renamed twice: Insider holds each latest name",
        ],
    )


RESTART_EVENTS = 1_000
# Temporal away this long in the middle of the stream.
TEMPORAL_AWAY_SECONDS = 8.0
# Posts of one request before the sender gives up on it (a second apart).
SENDER_ATTEMPTS = 120


async def temporal_restarted_while_events_flow(suite: Suite) -> Row:
    """A Temporal dev server of its own, persisted to a SQLite file, stopped in the middle
    of the stream and started again on the same file: the bridge refuses (503) what it
    cannot hand to Temporal; whatever it acknowledged reaches Insider once."""
    suite.reset()
    skus = suite.stack.seeder().catalog(5)
    events = storefront_events(RESTART_EVENTS, 200, skus)
    requests = [
        {"events": events[n : n + PER_REQUEST]} for n in range(0, RESTART_EVENTS, PER_REQUEST)
    ]
    db_file = suite.logs / f"temporal-{uuid.uuid4()}.db"
    temporal_port, ui_port = free_port(), free_port()
    temporal = ManagedProcess(
        "temporal (restartable)",
        temporal_dev_server_command(temporal_port, ui_port, db_file=db_file, headless=True),
        log_path=suite.logs / "temporal-restartable.log",
    )
    address = f"127.0.0.1:{temporal_port}"
    task_queue = f"reliability-{uuid.uuid4()}"
    env = {
        **suite.stack.worker_env(task_queue),
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_JOURNEY_SHARDS": str(SHARDS),
    }
    port = free_port()
    expected: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    refused_while_away = 0
    slowest_while_away = 0.0
    away = False
    with temporal:
        await connect_when_up(address)
        with (
            suite.running_workers(task_queue, env),
            bridge_process(suite.stack, env, port, log_name="reliability-bridge-restart"),
        ):
            stack = RealtimeStack(suite, task_queue, f"http://127.0.0.1:{port}", [])
            async with httpx.AsyncClient(timeout=30) as http:

                async def deliver(body: dict[str, Any]) -> None:
                    """Post until accepted, as an at-least-once sender does (a refused
                    request is posted again a second later)."""
                    nonlocal refused_while_away, slowest_while_away
                    for _ in range(SENDER_ATTEMPTS):
                        sent_away = away
                        started = time.monotonic()
                        try:
                            status = await stack.post(http, "/events", body)
                        except httpx.HTTPError:
                            status = 0  # no answer: not acknowledged
                        statuses[status] += 1
                        if sent_away:
                            slowest_while_away = max(slowest_while_away, time.monotonic() - started)
                        if status // 100 == 2:
                            expected.update(e["event_id"] for e in body["events"])
                            return
                        if sent_away:
                            refused_while_away += 1
                        await asyncio.sleep(1.0)

                async def post_all() -> None:
                    sending = []
                    for body in requests:
                        sending.append(asyncio.create_task(deliver(body)))
                        await asyncio.sleep(POST_SECONDS / len(requests))
                    await asyncio.gather(*sending)

                posting = asyncio.create_task(post_all())
                await wait_for(
                    lambda: sum(statuses.values()) >= len(requests) * 0.3,
                    60,
                    what="40% of the requests posted",
                )
                # Then Temporal stops (its SQLite file kept) ...
                away = True
                await asyncio.to_thread(temporal.stop)
                await asyncio.sleep(TEMPORAL_AWAY_SECONDS)
                # ... and starts again on the same file
                await asyncio.to_thread(temporal.start)
                back_at = time.monotonic()
                await connect_when_up(address)
                away = False
                await posting
                await wait_for(
                    lambda: sum(stored_event_keys(suite).values()) >= sum(expected.values()),
                    SETTLE_LIMIT_SECONDS,
                    what="every acknowledged event in Insider",
                )
                recovery = time.monotonic() - back_at
                await asyncio.sleep(2.0)  # a late duplicate would show now
    answers = ", ".join(f"{n} x {status or 'no answer'}" for status, n in sorted(statuses.items()))
    return Row(
        f"Temporal dev server stopped for {TEMPORAL_AWAY_SECONDS:g} s mid-stream, restarted "
        "on the same SQLite file",
        Tally.of(expected, stored_event_keys(suite)),
        f"bridge answers: {answers}; {refused_while_away} posted while Temporal was away "
        f"refused (slowest answer {slowest_while_away:.1f} s), each posted again until accepted",
        refused_while_away > 0,
        recovery,
        POST_SECONDS + TASK_TIMEOUT_SECONDS + RESTART_ALLOWANCE_SECONDS,
        f"{POST_SECONDS:g} s posting + {TASK_TIMEOUT_SECONDS:g} s shard task timeout + "
        f"{RESTART_ALLOWANCE_SECONDS:g} s reconnect",
        [
            "the sender posts a refused request again until accepted: every event must be "
            "in Insider once, also those of a request refused after part of it was committed"
        ],
    )
