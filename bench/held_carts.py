"""Open carts held while reminders fall due (`--shape held-carts`, issue 17).

A shop's open carts are many (100,000, most asleep on a 60-minute or 24-hour reminder) while
their reminders fall due at the rate carts are abandoned (a few a second). Holding cost grows
with the first, lateness with the second; `--shape carts` runs both through the bridge, which
arms ~8-15 carts a second here, so it cannot hold 100,000 in a run. This shape splits them:

1. **Held population**: `--held` carts made in the commercetools emulator in bulk (its
   launcher's seeding route), their workflows started `--held-concurrency` at a time, at most
   `--held-backlog` started and not yet armed, their reminder `--held-delay` ahead (24 hours by
   default: none falls due during the run). `--held-start`:
   - `bridge`: each cart's `ResourceCreated` parsed and handed to the bridge's own
     `CartSignaller` in this process (`parse_delivery` -> `cart_notification_signal` ->
     `CartSignaller.send`: the signal, then the timer admission and the signal-with-start, as
     the bridge's dispatch does). Each workflow lives its whole first life (reads the cart,
     hands its items to the journey shards, arms its reminder). Bypassed: the bridge's HTTP
     server and process. ~12 carts a second here.
   - `carried` (default): the same workflow started as its continue-as-new starts a run: the
     bridge's input (`CartSignaller.workflow_input`) carrying the state that first life leaves
     (`carried_state`) and the search attributes a run carries on. Its first workflow task
     starts the reminder timer. Bypassed besides: the first life's read and hand-off (Insider
     never gets the held carts' items) and the timer admission. ~30-80 carts a second here.
2. **Due stream**, while all of them are held: `--carts` carts through the real path (their
   notifications posted to a `ct-insider bridge` process at `--cart-rate`), reminded `--delay`
   seconds after their change; lost and duplicated reminders and their lateness (target p99 < 5
   s), as `--shape carts` reports them.

Reported: what holding costs per held cart (Temporal actions from the dev server's `action`
counter, history events and bytes of a sample, the dev server's store: a SQLite file, or its RSS
with `--temporal-in-memory`), worker RSS and CPU of every process in each phase, and the due
stream's figures.

Run: `.venv/bin/python -m bench.triggers --shape held-carts --held 100000 --carts 1500
--cart-rate 5 --delay 60` (~1 hour on this shared 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from bench.cart_triggers import (
    SHARDS,
    cart_worker_env,
    make_carts,
    notify,
    reminder_figures,
    reminders,
    timers_late,
)
from bench.harness import (
    CpuSeconds,
    PeakRss,
    Stack,
    bridge_process,
    local_stack,
    percentile,
    process_tree,
    worker_process,
)
from bench.realtime import temporal_actions
from bridge.carts import CartSignaller, cart_notification_signal
from ct_insider.carts.events import SentCart, observe
from ct_insider.carts.lines import CartRecord, snapshot
from ct_insider.config import CartSettings, TemporalSettings, TimerCapSettings
from ct_insider.journeys.envelopes import parse_delivery
from ct_insider.mapping.config import MappingConfig
from ct_insider.search_attributes import RUN_KIND, TIMER_DUE_AT, TIMER_KIND
from ct_insider.temporal import connect
from ct_insider.timers.cap import OpenTimerCap
from emulators.process import ManagedProcess, free_port
from workflows.cart import CartCarried, CartStats, CartWorkflow, cart_workflow_id
from workflows.journey_shard import shard_workflow_id

LATENESS_TARGET_SECONDS = 5.0
# How the held carts' workflows start: "bridge" - the bridge's signal-with-start, the cart's
# whole first life (read, hand-off of its items, reminder armed: ~8 carts/s here, so a few
# thousand); "carried" - the state that first life leaves, as continue-as-new hands it on
# (a run holding what Insider was told, its reminder armed): the same workflow asleep, at
# the rate Temporal takes starts.
StartMode = Literal["bridge", "carried"]


@dataclass(frozen=True)
class HeldShape:
    held: int  # carts held open (reminder far ahead)
    held_delay: str  # their CART_REMINDER_DELAYS (e.g. "24h")
    start: StartMode
    concurrency: int  # signal-with-starts in flight
    backlog: int  # carts started and not yet armed, at most
    due: int  # carts through the bridge whose reminders fall due while the others are held
    due_rate: float
    due_delay_seconds: int
    temporal_file: bool = True  # the dev server's store in a SQLite file (else in memory)
    sample: int = 300  # carts of each kind whose history is read


def cart_drafts(count: int, skus: list[str], prefix: str, seed: int) -> list[dict[str, Any]]:
    """Visitors' carts of 1-3 lines (as `--shape carts` makes them)."""
    pick = random.Random(seed)
    return [
        {
            "currency": "USD",
            "country": "US",
            "locale": "en-US",
            "anonymousId": f"{prefix}-{n}",
            "lineItems": [
                {"sku": sku, "quantity": pick.randint(1, 3)}
                for sku in pick.sample(skus, pick.randint(1, 3))
            ],
        }
        for n in range(count)
    ]


@dataclass(frozen=True)
class HeldCart:
    cart_id: str
    carried: CartCarried | None  # ("carried" starts) its workflow's state once armed


def carried_state(cart: dict[str, Any], mapping: MappingConfig, now: datetime) -> CartCarried:
    """What the cart's workflow hands on after its first burst (read, items handed off,
    reminder armed from `now`), as its continue-as-new would carry it."""
    snap = snapshot(CartRecord.model_validate(cart), mapping)
    observation = observe(SentCart(), snap)
    return CartCarried(
        sent=observation.sent,
        version=snap.version,
        last_change_at=now,
        armed_version=snap.version,
        stats=CartStats(signals=1, reads=1, bursts=1, events=len(observation.signals)),
    )


async def seed_held_carts(
    stack: Stack, count: int, skus: list[str], start: StartMode
) -> list[HeldCart]:
    """`count` carts through the emulator's bulk route (with their armed state, for
    "carried" starts), a chunk at a time."""
    drafts = cart_drafts(count, skus, "bench-held", seed=18)
    mapping = MappingConfig()
    url = f"{stack.ct_url}/_emulator/bulk/{stack.project_key}/cart"
    held: list[HeldCart] = []
    async with httpx.AsyncClient(timeout=300) as http:
        for at in range(0, count, 1_000):
            answer = await http.post(
                url,
                json=drafts[at : at + 1_000],
                params={"objects": "true" if start == "carried" else "false"},
            )
            answer.raise_for_status()
            body = answer.json()
            if start == "carried":
                now = datetime.now(UTC)
                held.extend(
                    HeldCart(cart["id"], carried_state(cart, mapping, now))
                    for cart in body["objects"]
                )
            else:
                held.extend(HeldCart(cart_id, None) for cart_id in body["ids"])
    return held


def insider_users(stack: Stack) -> int:
    """Profiles Insider holds: one per cart here (each its own visitor), once its items
    arrived, which the cart's workflow hands off just before it arms the reminder."""
    return int(stack.insider_stats()["users"])


def rss_mb(process: ManagedProcess) -> float:
    assert process.process is not None
    try:
        return sum(p.memory_info().rss for p in process_tree(process.process.pid)) / 2**20
    except psutil.Error:
        return 0.0


async def hold(
    stack: Stack,
    client: Client,
    journey_queue: str,
    shape: HeldShape,
    carts: list[HeldCart],
    users_before: int,
) -> dict[str, Any]:
    """Start every held cart's workflow; return once all are armed."""
    signaller = CartSignaller(
        client,
        journey_queue,
        CartSettings(events_enabled=True, reminder_delays=shape.held_delay, coalesce_seconds=1),
        timer_admission=OpenTimerCap.for_client(client, TimerCapSettings()),
    )
    retried = 0
    started = time.monotonic()
    next_cart = 0
    armed = 0
    progress: list[tuple[float, int, int]] = []  # (seconds, started, armed)

    async def through_bridge(cart: HeldCart) -> None:
        # The bridge's own steps for a cart's ResourceCreated (bridge/routing.py, dispatch).
        body = {
            "notificationType": "ResourceCreated",
            "projectKey": stack.project_key,
            "resource": {"typeId": "cart", "id": cart.cart_id},
            "version": 1,
            "modifiedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        notification = parse_delivery(body)
        assert notification is not None
        await signaller.send([cart_notification_signal(notification)])

    async def carried(cart: HeldCart) -> None:
        # A run of the cart's workflow as its continue-as-new starts it: the same input (the
        # bridge's), the state its first burst left, the search attributes it carries on.
        assert cart.carried is not None
        assert cart.carried.last_change_at is not None
        params = signaller.workflow_input(cart.cart_id)
        due = cart.carried.last_change_at + timedelta(seconds=params.reminder_delays[0])
        await client.start_workflow(
            CartWorkflow.run,
            params.model_copy(update={"carried": cart.carried}),
            id=cart_workflow_id(cart.cart_id),
            task_queue=journey_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(TIMER_KIND, "cart"),
                    SearchAttributePair(RUN_KIND, "cart"),
                    SearchAttributePair(TIMER_DUE_AT, due),
                ]
            ),
        )

    start = through_bridge if shape.start == "bridge" else carried

    async def start_one(cart: HeldCart) -> None:
        nonlocal retried
        for _ in range(30):  # what fails is delivered again, as commercetools would
            try:
                await start(cart)
                return
            except (RPCError, RuntimeError):
                retried += 1
                await asyncio.sleep(1)
        raise RuntimeError(f"cart {cart.cart_id} never started")

    async def starter() -> None:
        nonlocal next_cart
        while next_cart < len(carts):
            if next_cart - armed >= shape.backlog:
                await asyncio.sleep(0.2)
                continue
            cart = carts[next_cart]
            next_cart += 1
            await start_one(cart)

    async def armed_carts() -> int:
        if shape.start == "bridge":
            # Each cart its own visitor: Insider has its profile once its items arrived,
            # handed off just before the reminder is armed.
            return await asyncio.to_thread(insider_users, stack) - users_before
        # Workflow tasks are taken about in order of start: the last armed of those started
        # since the last look, by bisection (a dozen describes at most).
        low, high = armed, next_cart  # carts[:low] armed; carts[high:] not started
        while low < high:
            middle = (low + high) // 2
            if await armed_cart(client, carts[middle].cart_id):
                low = middle + 1
            else:
                high = middle
        return low

    async def watch() -> None:
        nonlocal armed
        last_print = 0.0
        while armed < len(carts):
            armed = await armed_carts()
            elapsed = time.monotonic() - started
            progress.append((elapsed, next_cart, armed))
            if elapsed - last_print >= 30:
                last_print = elapsed
                print(
                    f"  held: {elapsed:.0f} s, {next_cart:,} started, {armed:,} armed, "
                    f"load {load_average()}",
                    flush=True,
                )
            await asyncio.sleep(1)

    watcher = asyncio.ensure_future(watch())
    await asyncio.gather(*(starter() for _ in range(shape.concurrency)))
    starts_done = time.monotonic() - started
    await watcher
    seconds = time.monotonic() - started
    return {
        "held_started": signaller.started if shape.start == "bridge" else len(carts),
        "held_refused_at_cap": signaller.refused,
        "held_start_retries": retried,
        "held_starts_seconds": round(starts_done, 1),
        "held_armed_seconds": round(seconds, 1),
        "held_armed_per_second": round(len(carts) / seconds, 1),
        "held_armed_per_second_by_tenth": by_tenth(progress),
    }


async def armed_cart(client: Client, cart_id: str) -> bool:
    """Whether the cart's workflow has taken its first workflow task (its timer started)."""
    try:
        described = await client.get_workflow_handle(cart_workflow_id(cart_id)).describe()
    except RPCError:
        return False
    return described.history_length >= 5  # started, its task scheduled/started/completed, timer


def by_tenth(progress: list[tuple[float, int, int]]) -> list[float]:
    """Carts armed per second in each tenth of the arming (does the rate fall as more are
    held?)."""
    if not progress:
        return []
    total = progress[-1][2]
    rates: list[float] = []
    previous = (0.0, 0)
    for tenth in range(1, 11):
        goal = total * tenth / 10
        at = next((p for p in progress if p[2] >= goal), progress[-1])
        span = at[0] - previous[0]
        rates.append(round((at[2] - previous[1]) / span, 1) if span > 0 else 0.0)
        previous = (at[0], at[2])
    return rates


async def cart_histories(
    client: Client, cart_ids: list[str], fired_late: bool
) -> dict[str, float | None]:
    """History of each cart's current run (events, bytes), its stats and, if `fired_late`,
    how late Temporal fired its timers."""
    events: list[int] = []
    size: list[int] = []
    runs = reads = 0
    late: list[float] = []
    for cart_id in cart_ids:
        handle = client.get_workflow_handle(cart_workflow_id(cart_id))
        described = await handle.describe()
        events.append(described.history_length)
        size.append(described.raw_description.workflow_execution_info.history_size_bytes)
        stats = await handle.query(CartWorkflow.stats)
        runs += stats.runs
        reads += stats.reads
        if fired_late:
            late.extend(await timers_late(handle))
    count = max(1, len(cart_ids))
    return {
        "sampled": len(cart_ids),
        "history_events_per_cart": round(sum(events) / count, 1),
        "history_bytes_per_cart": round(sum(size) / count),
        "runs_per_cart": round(runs / count, 2),
        "commercetools_reads_per_cart": round(reads / count, 2),
        "timer_fired_late_p99_seconds": round(percentile(late, 0.99), 2) if late else None,
    }


async def shard_history(client: Client, journey_queue: str) -> int:
    ids = ", ".join(f"'{shard_workflow_id(journey_queue, n)}'" for n in range(SHARDS))
    total = 0
    async for execution in client.list_workflows(f"WorkflowId IN ({ids})"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        total += (await handle.describe()).history_length
    return total


def store_mb(database: Path | None) -> float | None:
    """The dev server's SQLite store on disk (with its write-ahead log), MB."""
    if database is None:
        return None
    files = database.parent.glob(f"{database.name}*")
    return round(sum(f.stat().st_size for f in files) / 2**20, 1)


def load_average() -> list[float]:
    return [round(x, 2) for x in psutil.getloadavg()]


def per(total: float | None, count: int, digits: int = 2) -> float | None:
    return round(total / count, digits) if total is not None and count else None


async def run_held(shape: HeldShape) -> dict[str, Any]:
    logs = Path(".dev/bench-logs/triggers-held-carts")
    # In a file, so what a held cart costs the server's store is its size, not its memory.
    database = logs / "temporal.db" if shape.temporal_file else None
    result: dict[str, Any] = {
        "shape": "held-carts",
        "held": shape.held,
        "held_delay": shape.held_delay,
        "held_start": shape.start,
        "due": shape.due,
        "due_rate": shape.due_rate,
        "due_delay_seconds": shape.due_delay_seconds,
        "load_average_at_start": load_average(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with local_stack(logs, temporal_db=database) as stack:
        temporal = stack.servers["temporal"]
        assert temporal.process is not None
        temporal_pid = temporal.process.pid
        skus = stack.seeder().catalog(30)
        started = time.monotonic()
        held = await seed_held_carts(stack, shape.held, skus, shape.start)
        held_ids = [cart.cart_id for cart in held]
        result["held_seeded_seconds"] = round(time.monotonic() - started, 1)
        print(f"  seeded {len(held):,} carts in {result['held_seeded_seconds']} s", flush=True)
        task_queue = f"bench-{uuid.uuid4()}"
        journey_queue = f"{task_queue}-journeys"
        port = free_port()
        env = cart_worker_env(stack, task_queue, shape.due_delay_seconds)
        client = await connect(TemporalSettings(address=stack.temporal_address))
        with (
            worker_process(stack, task_queue, env=env) as worker,
            bridge_process(stack, env, port) as bridge,
        ):
            assert worker.process is not None
            processes = {**stack.servers, "worker": worker, "bridge": bridge}
            # 1. The held population.
            await asyncio.sleep(2)
            temporal_rss_before = rss_mb(temporal)
            store_before = store_mb(database)
            actions_before = temporal_actions(stack)
            users_before = await asyncio.to_thread(insider_users, stack)
            with PeakRss(worker.process.pid) as worker_rss, CpuSeconds(processes) as cpu:
                result.update(await hold(stack, client, journey_queue, shape, held, users_before))
            await asyncio.sleep(5)  # (the last hand-offs' shard deliveries)
            actions_held = temporal_actions(stack)
            result["load_average_after_hold"] = load_average()
            result["held_worker_peak_rss_mb"] = round(worker_rss.peak_mb, 1)
            result["held_cpu_seconds"] = cpu.spent
            result["held_cpu_ms_per_cart"] = {
                name: round(1000 * spent / shape.held, 2) for name, spent in cpu.spent.items()
            }
            held_actions = (
                actions_held - actions_before
                if actions_held is not None and actions_before is not None
                else None
            )
            result["held_temporal_actions_per_cart"] = per(held_actions, shape.held)
            temporal_rss_held = rss_mb(temporal)
            result["temporal_rss_mb_before"] = round(temporal_rss_before, 1)
            result["temporal_rss_mb_held"] = round(temporal_rss_held, 1)
            result["temporal_rss_kb_per_held_cart"] = round(
                (temporal_rss_held - temporal_rss_before) * 1024 / shape.held, 2
            )
            result["worker_rss_mb_held"] = round(rss_mb(worker), 1)
            store_held = store_mb(database)
            result["temporal_store_mb_before"] = store_before
            result["temporal_store_mb_held"] = store_held
            if store_before is not None and store_held is not None:
                result["temporal_store_kb_per_held_cart"] = round(
                    (store_held - store_before) * 1024 / shape.held, 2
                )
            print(f"  held: {result}", flush=True)

            # 2. The due stream through the bridge, all of the above held.
            due_carts = await make_carts(stack, shape.due, skus)
            actions_before_due = temporal_actions(stack)
            with (
                PeakRss(worker.process.pid) as worker_rss,
                PeakRss(temporal_pid) as temporal_rss,
                CpuSeconds(processes) as cpu,
            ):
                posting, refused = await notify(port, due_carts, shape.due_rate)
                deadline = time.monotonic() + shape.due_delay_seconds + 300
                while time.monotonic() < deadline:
                    if len(await asyncio.to_thread(reminders, stack)) >= shape.due:
                        break
                    await asyncio.sleep(1)
                result["load_average_after_due"] = load_average()
            await asyncio.sleep(3)  # late duplicates would show up now
            found = await asyncio.to_thread(reminders, stack)
            actions_after_due = temporal_actions(stack)
            result.update(
                {
                    "due_posting_seconds": round(posting, 1),
                    "due_refused": refused,
                    **{
                        f"due_{key}": value
                        for key, value in reminder_figures(found, shape.due).items()
                    },
                    "due_worker_peak_rss_mb": round(worker_rss.peak_mb, 1),
                    "due_temporal_peak_rss_mb": round(temporal_rss.peak_mb, 1),
                    "due_cpu_seconds": cpu.spent,
                    "due_temporal_actions_per_cart": per(
                        actions_after_due - actions_before_due
                        if actions_after_due is not None and actions_before_due is not None
                        else None,
                        shape.due,
                    ),
                }
            )
            pick = random.Random(19)
            held_sample = pick.sample(held_ids, min(shape.sample, len(held_ids)))
            due_sample = pick.sample(
                [c["id"] for c in due_carts], min(shape.sample, len(due_carts))
            )
            result["held_history"] = await cart_histories(client, held_sample, fired_late=False)
            result["due_history"] = await cart_histories(client, due_sample, fired_late=True)
            result["shard_history_events_total"] = await shard_history(client, journey_queue)
            result["shard_history_events_per_cart"] = round(
                result["shard_history_events_total"] / (shape.held + shape.due), 2
            )
            result["temporal_rss_mb_end"] = round(rss_mb(temporal), 1)
            result["temporal_store_mb_end"] = store_mb(database)
    return result


def held_report(result: dict[str, Any]) -> str:
    return "\n".join(f"  {key}: {value}" for key, value in result.items())


def held_missed(result: dict[str, Any]) -> list[str]:
    missed: list[str] = []
    if result["due_lost"] or result["due_duplicated"]:
        missed.append(f"{result['due_lost']} lost, {result['due_duplicated']} duplicated")
    p99 = result["due_lateness_p99_seconds"]
    if p99 is None or p99 >= LATENESS_TARGET_SECONDS:
        missed.append(f"p99 lateness {p99} s (target < {LATENESS_TARGET_SECONDS:g} s)")
    if result["held_refused_at_cap"]:
        missed.append(f"{result['held_refused_at_cap']} held carts refused at the timer cap")
    return missed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--held", type=int, default=100_000, help="held-carts: carts held open")
    parser.add_argument(
        "--held-delay", default="24h", help="held-carts: the held carts' reminder delay"
    )
    parser.add_argument(
        "--held-start",
        choices=["carried", "bridge"],
        default="carried",
        help="held-carts: start them as the bridge does (their whole first life: slow) or "
        "in the state it leaves (continue-as-new's)",
    )
    parser.add_argument(
        "--temporal-in-memory",
        action="store_true",
        help="held-carts: the dev server's store in memory (default: a SQLite file)",
    )
    parser.add_argument(
        "--held-concurrency", type=int, default=32, help="held-carts: starts in flight"
    )
    parser.add_argument(
        "--held-backlog",
        type=int,
        default=2_000,
        help="held-carts: carts started and not yet armed, at most",
    )


async def run_held_from(args: argparse.Namespace) -> dict[str, Any]:
    """The held-carts shape as `bench.triggers` runs it (--held, --held-delay, and the due
    stream's --carts, --cart-rate, --delay)."""
    return await run_held(
        HeldShape(
            held=args.held,
            held_delay=args.held_delay,
            start=args.held_start,
            concurrency=args.held_concurrency,
            backlog=args.held_backlog,
            due=args.carts,
            due_rate=args.cart_rate,
            due_delay_seconds=args.delay,
            temporal_file=not args.temporal_in_memory,
        )
    )
