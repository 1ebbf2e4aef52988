"""Faults during batch runs: the order backfill (purchases: events Insider could hold twice)
and the full catalog sync, each on worker processes that may be SIGKILLed and restarted,
against an Insider and a commercetools that fail in the ways the real ones do."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import InsiderSettings
from ct_insider.deadletters import DeadLetterStore
from emulators.insider.app import PROFILE_READ_COST
from reliability.framework import (
    Row,
    ScenarioFailed,
    Suite,
    Tally,
    expected_purchases,
    kill_and_restart,
    stored_purchases,
    wait_for,
)
from starters.backfill import start_backfill
from starters.check import start_check
from starters.delta import start_delta
from starters.dlq import redrive_sync
from workflows.backfill import BackfillInput
from workflows.check import CheckInput
from workflows.delta import DeltaSyncInput, DeltaSyncWorkflow
from workflows.redrive import HEARTBEAT_TIMEOUT as REDRIVE_HEARTBEAT_TIMEOUT

CUSTOMERS = 200
ORDERS = 1_000
SKUS = 10
# Insider takes this long for each request in every backfill row, so a run lasts long
# enough to be cut in the middle (the fault-free baseline runs with it too).
INSIDER_LATENCY_MS = 40
# Small chunks: a killed worker's chunk is retried from its last heartbeat within seconds.
BACKFILL = {"batch_size": 50, "heartbeat_seconds": 3}
# What a fault may cost beyond the fault-free run: this many times its time, plus the
# waits Insider imposed (Retry-After) and the fault's own length.
SLOWDOWN = 3.0
# A restarted worker process (start, connect, first poll), a dead one's heartbeat (3 s)
# and workflow task timeouts.
RESTART_ALLOWANCE_SECONDS = 30.0
RUN_LIMIT_SECONDS = 300.0

BASELINE = "order backfill"
# The profile-read quota units a worker spends per minute (INSIDER_PROFILE_UNITS_PER_MINUTE).
PROFILE_UNITS_PER_MINUTE = float(InsiderSettings.model_fields["profile_units_per_minute"].default)


def all_orders(suite: Suite) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = suite.stack.ct("GET", f"orders?limit=500&offset={offset}")["results"]
        orders.extend(page)
        offset += 500
        if len(page) < 500:
            return orders


def seed_orders(suite: Suite) -> Counter[str]:
    """Customers, products and orders in commercetools; the purchases they must become."""
    seeder = suite.stack.seeder()
    customers = seeder.customers(CUSTOMERS)
    seeder.orders(ORDERS, customers, seeder.catalog(SKUS))
    orders = all_orders(suite)
    if len(orders) != ORDERS:
        raise ScenarioFailed(f"seeded {len(orders)} orders of {ORDERS}")
    return expected_purchases(orders)


@asynccontextmanager
async def order_backfill(suite: Suite) -> AsyncIterator[tuple[str, Counter[str]]]:
    """A fresh stack with the orders seeded and Insider at its baseline latency; yields the
    task queue and the purchases expected."""
    suite.reset()
    expected = seed_orders(suite)
    suite.insider_faults(latency_ms=INSIDER_LATENCY_MS)
    yield f"reliability-{uuid.uuid4()}", expected


async def backfill_run(suite: Suite, task_queue: str, target: str = "orders", **extra: Any) -> Any:
    handle = await start_backfill(
        suite.client,
        task_queue,
        BackfillInput.model_validate({"target": target, **BACKFILL, **extra}),
    )
    try:
        return await asyncio.wait_for(handle.result(), RUN_LIMIT_SECONDS)
    except TimeoutError:
        raise ScenarioFailed(
            f"the {target} backfill did not finish in {RUN_LIMIT_SECONDS:g} s"
        ) from None


async def fault_free_order_backfill(suite: Suite) -> Row:
    async with order_backfill(suite) as (task_queue, expected):
        with suite.running_workers(task_queue):
            started = time.monotonic()
            await backfill_run(suite, task_queue)
            seconds = time.monotonic() - started
    suite.baselines[BASELINE] = seconds
    return Row(
        f"{BASELINE}, no fault (baseline)",
        Tally.of(expected, stored_purchases(suite)),
        f"none; Insider answers in {INSIDER_LATENCY_MS} ms",
        True,
        seconds,
        RUN_LIMIT_SECONDS,
        "run limit",
    )


def baseline(suite: Suite) -> float:
    if BASELINE not in suite.baselines:
        raise ScenarioFailed("the fault-free order backfill must run first")
    return suite.baselines[BASELINE]


async def worker_killed_during_order_backfill(suite: Suite) -> Row:
    async with order_backfill(suite) as (task_queue, expected):
        total = sum(expected.values())
        with suite.running_workers(task_queue) as workers:
            run = asyncio.create_task(backfill_run(suite, task_queue))
            # When the run is well under way, the first worker dies (SIGKILL) ...
            at_kill = await wait_for(
                lambda: sum(stored_purchases(suite).values()),
                RUN_LIMIT_SECONDS,
                until=lambda stored: stored >= total * 0.4 or run.done(),
                what="the order backfill 40% done",
            )
            # ... and is started again (the competing worker, if any, carries on meanwhile).
            killed_at = await kill_and_restart(workers[0])
            await run
            recovery = time.monotonic() - killed_at
    return Row(
        "worker SIGKILLed during the order backfill, restarted",
        Tally.of(expected, stored_purchases(suite)),
        f"SIGKILL at {at_kill:,} of {total:,} purchases stored",
        at_kill < total,
        recovery,
        SLOWDOWN * baseline(suite) + RESTART_ALLOWANCE_SECONDS,
        f"{SLOWDOWN:g} x fault-free + {RESTART_ALLOWANCE_SECONDS:g} s restart",
    )


def _bucket_statuses(suite: Suite, status: int) -> int:
    statuses = suite.insider_stats()["statuses"]
    return sum(n for key, n in statuses.items() if key.endswith(f":{status}"))


def insider_waits(suite: Suite) -> tuple[float, str]:
    """What Insider's own limits made the run wait: the Retry-After seconds it sent (profile
    reads aside) plus the time the profile reads made need at the quota share a worker
    spends (INSIDER_PROFILE_UNITS_PER_MINUTE): settling a doubtful upsert reads profiles."""
    stats = suite.insider_stats()
    retry_after = sum(
        seconds for bucket, seconds in stats["imposed_wait_seconds"].items() if bucket != "profile"
    )
    reads = int(stats["requests"].get("profile", 0))
    quota_seconds = reads * PROFILE_READ_COST * 60 / PROFILE_UNITS_PER_MINUTE
    return (
        retry_after + quota_seconds,
        f"{retry_after:g} s Retry-After + {quota_seconds:.0f} s of profile-read quota "
        f"for {reads} reads",
    )


async def _insider_fault_row(
    suite: Suite,
    scenario: str,
    faults: dict[str, Any],
    evidence: Callable[[Suite], tuple[str, bool]],
    *,
    bursts: tuple[float, float] | None = None,
    env: dict[str, str] | None = None,
) -> Row:
    """The order backfill with `faults` on for the whole run, or in `bursts` (seconds on,
    seconds off) while it runs; `env` adds worker settings."""
    async with order_backfill(suite) as (task_queue, expected):
        with suite.running_workers(task_queue, env):
            faulty = {"latency_ms": INSIDER_LATENCY_MS, **faults}
            calm = {"latency_ms": INSIDER_LATENCY_MS}
            suite.insider_faults(**faulty)
            started = time.monotonic()
            run = asyncio.create_task(backfill_run(suite, task_queue))
            faulted_seconds = 0.0
            if bursts is not None:
                on, off = bursts
                while not run.done():
                    suite.insider_faults(**faulty)
                    burst_started = time.monotonic()
                    before = sum(suite.insider_stats()["requests"].values())
                    await asyncio.wait({run}, timeout=on)
                    suite.insider_faults(**calm)
                    faulted_seconds += time.monotonic() - burst_started
                    suite.requests_in_bursts += (
                        sum(suite.insider_stats()["requests"].values()) - before
                    )
                    await asyncio.wait({run}, timeout=off)
            await run
            seconds = time.monotonic() - started
            suite.insider_faults()
    waits, waits_reason = insider_waits(suite)
    text, seen = evidence(suite)
    allowed = SLOWDOWN * baseline(suite) + waits + faulted_seconds
    reason = f"{SLOWDOWN:g} x fault-free + {waits_reason}"
    if bursts:
        reason += f" + {faulted_seconds:.0f} s of bursts"
    return Row(
        scenario,
        Tally.of(expected, stored_purchases(suite)),
        text,
        seen,
        seconds,
        allowed,
        reason,
    )


def _answered(status: int, what: str) -> Callable[[Suite], tuple[str, bool]]:
    def evidence(suite: Suite) -> tuple[str, bool]:
        stats = suite.insider_stats()
        upserts = int(stats["requests"].get("upsert", 0))
        refused = int(stats["statuses"].get(f"upsert:{status}", 0))
        reads = int(stats["requests"].get("profile", 0))
        others = _bucket_statuses(suite, status) - refused
        text = f"{refused:,} of {upserts:,} upserts {what}"
        if others:
            text += f" (and {others:,} other requests)"
        return f"{text}; {reads:,} profile reads to settle", refused > 0

    return evidence


async def insider_5xx(suite: Suite) -> Row:
    return await _insider_fault_row(
        suite,
        "order backfill, Insider answers 30% of requests 500",
        {"error_rate": 0.3},
        _answered(500, "answered 500"),
    )


async def insider_lost_answers(suite: Suite) -> Row:
    return await _insider_fault_row(
        suite,
        "order backfill, Insider stores then answers 500 (lost answers, 30% of upserts)",
        {"lost_answer_rate": 0.3},
        _answered(500, "stored, then answered 500"),
    )


async def insider_429_bursts(suite: Suite) -> Row:
    return await _insider_fault_row(
        suite,
        "order backfill, bursts of 429 with Retry-After: 1 (2 s on, 2 s off)",
        {"rate_limited_rate": 1.0, "retry_after_seconds": 1, "send_retry_after": True},
        _answered(429, "answered 429 with Retry-After"),
        bursts=(2.0, 2.0),
    )


async def insider_429_bursts_no_retry_after(suite: Suite) -> Row:
    return await _insider_fault_row(
        suite,
        "order backfill, bursts of 429 without Retry-After (2 s on, 2 s off)",
        {"rate_limited_rate": 1.0, "send_retry_after": False},
        _answered(429, "answered 429, no Retry-After"),
        bursts=(2.0, 2.0),
    )


# The worker's own request timeout in the latency row, and Insider's processing time then.
REQUEST_TIMEOUT_SECONDS = 1.0
SLOW_INSIDER_MS = 2_000


async def insider_slower_than_the_client_timeout(suite: Suite) -> Row:
    def evidence(suite: Suite) -> tuple[str, bool]:
        count = suite.requests_in_bursts
        return (
            f"{count} requests taken while Insider needed {SLOW_INSIDER_MS / 1000:g} s "
            f"(client timeout {REQUEST_TIMEOUT_SECONDS:g} s): unanswered, stored after",
            count > 0,
        )

    suite.requests_in_bursts = 0
    return await _insider_fault_row(
        suite,
        "order backfill, Insider slower than the client timeout in bursts (3 s on, 3 s off)",
        {"latency_ms": SLOW_INSIDER_MS},
        evidence,
        bursts=(3.0, 3.0),
        env={"INSIDER_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS)},
    )


async def commercetools_outage(suite: Suite, *, status: int, seconds: float) -> Row:
    """commercetools answers every API request `status` for `seconds` in the middle of the
    order backfill."""
    async with order_backfill(suite) as (task_queue, expected):
        total = sum(expected.values())
        with suite.running_workers(task_queue):
            run = asyncio.create_task(backfill_run(suite, task_queue))
            at_fault = await wait_for(
                lambda: sum(stored_purchases(suite).values()),
                RUN_LIMIT_SECONDS,
                until=lambda stored: stored >= total * 0.3 or run.done(),
                what="the order backfill 30% done",
            )
            suite.ct_faults(unavailable=True, status=status)
            await asyncio.wait({run}, timeout=seconds)
            suite.ct_faults(unavailable=False)
            back_at = time.monotonic()
            await run
            recovery = time.monotonic() - back_at
    refused = suite.ct_stats()["unavailable"]
    answered = f"answered {status}" if status else "dropped without an answer"
    return Row(
        f"order backfill, commercetools {'unreachable' if not status else f'answers {status}'} "
        f"for {seconds:g} s",
        Tally.of(expected, stored_purchases(suite)),
        f"{refused:,} commercetools requests {answered}, from {at_fault:,} of {total:,} "
        "purchases stored",
        refused > 0 and at_fault < total,
        recovery,
        SLOWDOWN * baseline(suite) + RESTART_ALLOWANCE_SECONDS,
        f"{SLOWDOWN:g} x fault-free + {RESTART_ALLOWANCE_SECONDS:g} s retry backoff",
    )


async def commercetools_502(suite: Suite) -> Row:
    return await commercetools_outage(suite, status=502, seconds=5)


async def commercetools_503(suite: Suite) -> Row:
    return await commercetools_outage(suite, status=503, seconds=5)


async def commercetools_unreachable(suite: Suite) -> Row:
    """Status 0: the emulator drops every API connection without an answer."""
    return await commercetools_outage(suite, status=0, seconds=30)


async def commercetools_token_expires(suite: Suite) -> Row:
    """Every token issued so far is revoked in the middle of the order backfill: the
    next request with one is refused 401 invalid_token."""
    async with order_backfill(suite) as (task_queue, expected):
        total = sum(expected.values())
        with suite.running_workers(task_queue):
            run = asyncio.create_task(backfill_run(suite, task_queue))
            at_fault = await wait_for(
                lambda: sum(stored_purchases(suite).values()),
                RUN_LIMIT_SECONDS,
                until=lambda stored: stored >= total * 0.3 or run.done(),
                what="the order backfill 30% done",
            )
            suite.expire_ct_tokens()
            expired_at = time.monotonic()
            await run
            recovery = time.monotonic() - expired_at
    refused = suite.ct_stats()["expired_tokens"]
    return Row(
        "order backfill, the commercetools token expires mid-run",
        Tally.of(expected, stored_purchases(suite)),
        f"{refused:,} requests refused 401 with the expired token, from {at_fault:,} of {total:,} stored",
        refused > 0 and at_fault < total,
        recovery,
        SLOWDOWN * baseline(suite),
        f"{SLOWDOWN:g} x fault-free",
    )


PRODUCTS = 150
# Small pages: the full sync sends one catalog request per page, paced at Insider's 60 a
# minute, so a kill lands between pages.
CATALOG_BACKFILL = {"batch_size": 20, "heartbeat_seconds": 3}


def stored_catalog(suite: Suite) -> Counter[str]:
    """Catalog items Insider holds, by item id and locale (keyed: a re-sent item replaces
    its earlier copy, so none can be held twice)."""
    return Counter(f"{item['item_id']}/{item['locale']}" for item in suite.insider_catalog())


async def worker_killed_during_catalog_sync(suite: Suite) -> Row:
    suite.reset()
    suite.stack.seeder().catalog(PRODUCTS)
    # Given what a fault-free full sync of this catalog stores in Insider ...
    task_queue = f"reliability-{uuid.uuid4()}"
    with suite.running_workers(task_queue):
        started = time.monotonic()
        await backfill_run(suite, task_queue, "catalog", **CATALOG_BACKFILL)
        fault_free = time.monotonic() - started
    expected = stored_catalog(suite)
    total = sum(expected.values())
    # (Insider emptied; new worker processes, which register the catalog's locales again:
    # a process does so once, and a real Insider never forgets them.)
    suite.stack.reset_insider()
    task_queue = f"reliability-{uuid.uuid4()}"
    with suite.running_workers(task_queue) as workers:
        # ... when a second full sync runs and the first worker dies in its middle
        run = asyncio.create_task(backfill_run(suite, task_queue, "catalog", **CATALOG_BACKFILL))
        at_kill = await wait_for(
            lambda: sum(stored_catalog(suite).values()),
            RUN_LIMIT_SECONDS,
            until=lambda stored: stored >= total * 0.3 or run.done(),
            what="the full catalog sync 30% done",
        )
        killed_at = await kill_and_restart(workers[0])
        await run
        recovery = time.monotonic() - killed_at
    return Row(
        "worker SIGKILLed during a full catalog sync, restarted",
        Tally.of(expected, stored_catalog(suite)),
        f"SIGKILL at {at_kill:,} of {total:,} catalog items stored",
        at_kill < total,
        recovery,
        SLOWDOWN * fault_free + RESTART_ALLOWANCE_SECONDS,
        f"{SLOWDOWN:g} x fault-free ({fault_free:.0f} s) + {RESTART_ALLOWANCE_SECONDS:g} s restart",
        ["catalog items are keyed: a re-sent item replaces its copy"],
    )


async def worker_killed_during_a_delta_window(suite: Suite) -> Row:
    """Orders arrive in commercetools while the orders delta sync runs; a worker dies while
    a window sends them."""
    suite.reset()
    seeder = suite.stack.seeder()
    customers = seeder.customers(CUSTOMERS)
    skus = seeder.catalog(SKUS)
    suite.insider_faults(latency_ms=INSIDER_LATENCY_MS)
    task_queue = f"reliability-{uuid.uuid4()}"
    params = DeltaSyncInput.model_validate(
        {
            "entity": "orders",
            "watermark": datetime.now(UTC) - timedelta(minutes=1),
            "interval_seconds": 1.0,
            "safety_margin_seconds": 0.3,
            "overlap_seconds": 3.0,
            # Like the backfill rows: a dead worker's window resumes after 3 s without a
            # heartbeat (the default is 60 s: a killed worker then delays its window that long).
            "heartbeat_seconds": BACKFILL["heartbeat_seconds"],
        }
    )
    with suite.running_workers(task_queue) as workers:
        handle = await start_delta(suite.client, task_queue, params)
        # (Insider holds the windows' second upsert until the worker is dead, then stores it:
        # the kill lands inside a window's send whatever the machine's speed; waiting for a
        # share of the purchases let a fast window send them all between two looks.)
        suite.insider_faults(latency_ms=INSIDER_LATENCY_MS, hold_after=1)
        try:
            # Given orders placed in four waves while the delta sync runs
            for wave in range(4):
                seeder.orders(ORDERS // 4, customers, skus, first_number=wave * ORDERS)
                await asyncio.sleep(1.0)
            expected = expected_purchases(all_orders(suite))
            total = sum(expected.values())
            # When a worker dies while a window sends them, and is started again
            await wait_for(
                lambda: suite.insider_stats()["held"].get("upsert", 0),
                RUN_LIMIT_SECONDS,
                what="a window's upsert held at Insider",
            )
            at_kill = sum(stored_purchases(suite).values())
            killed_at = await kill_and_restart(
                workers[0], lambda: suite.insider_faults(latency_ms=INSIDER_LATENCY_MS)
            )
            await wait_for(
                lambda: sum(stored_purchases(suite).values()) >= total,
                RUN_LIMIT_SECONDS,
                what="every purchase in Insider",
            )
            recovery = time.monotonic() - killed_at
            await asyncio.sleep(3.0)  # the next windows (and their overlap) would resend now
            status = await handle.query(DeltaSyncWorkflow.status)
        finally:
            await handle.terminate("reliability scenario over")
    windows = status.windows if status is not None else 0
    return Row(
        "worker SIGKILLed during an orders delta window, restarted",
        Tally.of(expected, stored_purchases(suite)),
        f"SIGKILL at {at_kill:,} of {total:,} purchases stored; {windows} windows run",
        at_kill < total,
        recovery,
        SLOWDOWN * baseline(suite) + RESTART_ALLOWANCE_SECONDS,
        f"{SLOWDOWN:g} x fault-free backfill + {RESTART_ALLOWANCE_SECONDS:g} s restart",
    )


DRIFTED_PURCHASES = 150
CHECK_PAGE_SIZE = 25
# The consistency check reads a profile per customer: Insider's quota (1,000 units a
# minute) would make this scenario last minutes, so the emulated account and the worker
# get a larger one.
CHECK_PROFILE_UNITS_PER_MINUTE = 60_000
# A check chunk's heartbeat timeout (workflows/check.py): a dead worker's chunk is tried
# again once it has passed (it allows for a profile read waiting on Insider's quota).
CHECK_HEARTBEAT_TIMEOUT_SECONDS = 120.0


async def worker_killed_during_a_check_repair(suite: Suite) -> Row:
    """Purchases deleted in Insider behind the connector's back; an orders consistency check
    with repair sends them again, and a worker dies while it does."""
    async with order_backfill(suite) as (task_queue, expected):
        suite.set_insider_limits(profile=CHECK_PROFILE_UNITS_PER_MINUTE)
        env = {"INSIDER_PROFILE_UNITS_PER_MINUTE": str(CHECK_PROFILE_UNITS_PER_MINUTE)}
        total = sum(expected.values())
        with suite.running_workers(task_queue, env) as workers:
            await backfill_run(suite, task_queue)
            if sum(stored_purchases(suite).values()) != total:
                raise ScenarioFailed("the backfill before the check did not store every purchase")
            # Given purchases deleted in Insider (drift) ...
            rng = random.Random(9)
            for event in rng.sample(suite.insider_events("purchase"), DRIFTED_PURCHASES):
                params = event["event_params"]
                suite.plant_drift(
                    action="delete_event",
                    identifiers=suite.insider_identifiers(event["insider_id"]),
                    match={
                        "event_name": "purchase",
                        "event_group_id": params["event_group_id"],
                        "product_id": params["product_id"],
                    },
                )
            drifted = total - sum(stored_purchases(suite).values())
            # ... when a check with repair runs and the first worker dies while it repairs
            handle = await start_check(
                suite.client,
                task_queue,
                CheckInput(
                    entity="orders",
                    all=True,
                    repair=True,
                    recent_margin_seconds=0,
                    page_size=CHECK_PAGE_SIZE,
                ),
            )
            before = total - drifted
            at_kill = await wait_for(
                lambda: sum(stored_purchases(suite).values()) - before,
                RUN_LIMIT_SECONDS,
                until=lambda repaired: repaired >= drifted * 0.2,
                what="the repair under way (20% of the deleted purchases sent again)",
                every=0.1,
            )
            killed_at = await kill_and_restart(workers[0])
            try:
                report = await asyncio.wait_for(handle.result(), RUN_LIMIT_SECONDS)
            except TimeoutError:
                raise ScenarioFailed("the check did not finish") from None
            recovery = time.monotonic() - killed_at
    return Row(
        "worker SIGKILLed during a consistency-check repair, restarted",
        Tally.of(expected, stored_purchases(suite)),
        f"{drifted} purchases deleted in Insider; SIGKILL after {at_kill} repaired; the "
        f"check reports {report.repaired} repaired",
        0 < at_kill < drifted,
        recovery,
        SLOWDOWN * baseline(suite) + CHECK_HEARTBEAT_TIMEOUT_SECONDS + RESTART_ALLOWANCE_SECONDS,
        f"{SLOWDOWN:g} x fault-free backfill + {CHECK_HEARTBEAT_TIMEOUT_SECONDS:g} s check "
        f"heartbeat timeout + {RESTART_ALLOWANCE_SECONDS:g} s restart",
        [f"profile quota raised to {CHECK_PROFILE_UNITS_PER_MINUTE:,} units a minute"],
    )


LETTERED_ORDERS = 300


async def worker_killed_during_a_dead_letter_redrive(suite: Suite) -> Row:
    """Insider refuses purchases (an event not yet defined in InOne): the order backfill
    dead-letters every order; once it is defined, the letters are re-driven, and a worker
    dies during the re-drive."""
    suite.reset()
    seeder = suite.stack.seeder()
    seeder.orders(LETTERED_ORDERS, seeder.customers(CUSTOMERS // 2), seeder.catalog(SKUS))
    expected = expected_purchases(all_orders(suite))
    total = sum(expected.values())
    suite.insider_faults(latency_ms=INSIDER_LATENCY_MS, undefined_events=["purchase"])
    task_queue = f"reliability-{uuid.uuid4()}"
    async with CommercetoolsClient(suite.stack.ct_settings()) as ct:
        store = DeadLetterStore(ct)
        with suite.running_workers(task_queue) as workers:
            result = await backfill_run(suite, task_queue)
            letters = await store.list(path="backfill")
            if (
                result.phases[0].stats.rejected != LETTERED_ORDERS
                or len(letters) != LETTERED_ORDERS
            ):
                raise ScenarioFailed(
                    f"{result.phases[0].stats.rejected} orders rejected, {len(letters)} letters; "
                    f"expected {LETTERED_ORDERS}"
                )
            # Given the event defined now, when every letter is re-driven ...
            suite.insider_faults(latency_ms=INSIDER_LATENCY_MS)
            started = time.monotonic()
            redrive = asyncio.create_task(
                redrive_sync(suite.client, task_queue, letters, wait_seconds=RUN_LIMIT_SECONDS)
            )
            # ... and the first worker dies in the middle of it, and is started again
            at_kill = await wait_for(
                lambda: sum(stored_purchases(suite).values()),
                RUN_LIMIT_SECONDS,
                until=lambda stored: stored >= total * 0.3 or redrive.done(),
                what="the re-drive 30% done",
                every=0.1,
            )
            killed_at = await kill_and_restart(workers[0])
            _, outcome = await redrive
            recovery = time.monotonic() - killed_at
            fault_free_share = killed_at - started
            left = await store.list(path="backfill")
    redrive_heartbeat = REDRIVE_HEARTBEAT_TIMEOUT.total_seconds()
    return Row(
        "worker SIGKILLed during a dead-letter re-drive, restarted",
        Tally.of(expected, stored_purchases(suite)),
        f"{LETTERED_ORDERS} orders dead-lettered (purchase undefined in Insider); SIGKILL at "
        f"{at_kill} of {total} purchases re-driven; letters: {len(outcome.delivered)} "
        f"delivered, {len(outcome.missing)} already gone when the dead worker's batch was "
        f"retried, {len(left)} left",
        at_kill < total and not left,
        recovery,
        SLOWDOWN * baseline(suite) + redrive_heartbeat + RESTART_ALLOWANCE_SECONDS,
        f"{SLOWDOWN:g} x fault-free backfill + {redrive_heartbeat:g} s re-drive heartbeat "
        f"timeout + {RESTART_ALLOWANCE_SECONDS:g} s restart",
        [f"re-drive ran {fault_free_share:.1f} s before the kill"],
    )
