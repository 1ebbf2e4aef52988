"""Journey triggers from commercetools: what open cart timers cost (`--shape carts`).

carts: N carts made in the commercetools emulator (1-3 lines each, visitors), their
ResourceCreated notifications posted to a bridge at a fixed rate, a worker process with
cart events on and a short reminder delay. Measures, once every cart was reminded: the
worker's peak RSS while all N carts had a timer armed, Temporal actions (the dev server's
`action` counter) and history events per cart (a sample of carts, every run), the journey
shards' history per cart, commercetools reads per cart, and how late each reminder reached
Insider after it was due (its event timestamp is the due moment, in whole seconds: the
lateness shown is at most 1 s more than the real one). Target: p99 lateness < 5 s.

Run: `.venv/bin/python -m bench.triggers --shape carts --carts 2000 [--cart-rate 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from bench.harness import (
    BRIDGE_TOKEN,
    CpuSeconds,
    PeakRss,
    Stack,
    bridge_process,
    local_stack,
    percentile,
    worker_process,
)
from bench.loadgen import at_times
from bench.realtime import temporal_actions
from ct_insider.config import TemporalSettings
from ct_insider.temporal import connect
from emulators.process import free_port
from workflows.cart import CartWorkflow

SHARDS = 4
LATENESS_TARGET_SECONDS = 5.0


@dataclass(frozen=True)
class CartShape:
    carts: int
    rate: float  # carts notified per second
    delay_seconds: int  # CART_REMINDER_DELAYS
    # False: stop once every cart's items reached Insider (its reminder armed): the cost and
    # memory of N open carts, without waiting for N reminders.
    reminders: bool = True


# -- carts -------------------------------------------------------------------------------


async def make_carts(stack: Stack, count: int, skus: list[str]) -> list[dict[str, Any]]:
    """`count` visitors' carts in the commercetools emulator (a few at a time)."""
    async with httpx.AsyncClient(timeout=60) as http:
        token = (
            await http.post(
                f"{stack.ct_url}/oauth/token",
                auth=(stack.client_id, stack.client_secret),
                data={"grant_type": "client_credentials"},
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        pick = random.Random(17)
        made: list[dict[str, Any]] = []
        gate = asyncio.Semaphore(16)

        async def one(n: int) -> None:
            lines = [
                {"sku": sku, "quantity": pick.randint(1, 3)}
                for sku in pick.sample(skus, pick.randint(1, 3))
            ]
            draft = {
                "currency": "USD",
                "country": "US",
                "locale": "en-US",
                "anonymousId": f"bench-visitor-{n}",
                "lineItems": lines,
            }
            async with gate:
                answer = await http.post(
                    f"{stack.ct_url}/{stack.project_key}/carts", json=draft, headers=headers
                )
            answer.raise_for_status()
            made.append(answer.json())

        await asyncio.gather(*(one(n) for n in range(count)))
        return made


def created(cart: dict[str, Any]) -> dict[str, Any]:
    return {
        "notificationType": "ResourceCreated",
        "projectKey": "bench",
        "resource": {"typeId": "cart", "id": cart["id"]},
        "version": cart["version"],
        "modifiedAt": cart["lastModifiedAt"],
    }


async def notify(port: int, carts: list[dict[str, Any]], rate: float) -> tuple[float, int]:
    """Each cart's ResourceCreated, posted at `rate` per second; (seconds, refused)."""
    refused = 0
    async with httpx.AsyncClient(
        timeout=60, headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    ) as http:

        async def send(index: int) -> None:
            nonlocal refused
            url = f"http://127.0.0.1:{port}/webhooks/commercetools"
            for _ in range(20):  # a 503 is delivered again, as commercetools would
                try:
                    answer = await http.post(url, json=created(carts[index]))
                    if answer.status_code == 202:
                        return
                except httpx.TransportError:  # (the bridge too slow to answer: again)
                    pass
                refused += 1
                await asyncio.sleep(1)

        seconds = await at_times([n / rate for n in range(len(carts))], send)
    return seconds, refused


def reminders(stack: Stack, event_name: str = "cart_abandoned") -> list[dict[str, Any]]:
    body = httpx.get(
        f"{stack.insider_url}/_emulator/events",
        params={"event_name": event_name},
        timeout=300,
    ).json()
    return list(body["events"])


def carts_added(stack: Stack) -> int:
    """Carts whose items Insider holds (their reminder is armed once they are handed off)."""
    added = reminders(stack, "item_added_to_cart")
    return len({event["event_params"]["event_group_id"] for event in added})


async def history_per_cart(
    client: Client, journey_queue: str, sample: int
) -> dict[str, float | None]:
    """History events of a sample of carts (every run of each), and the shards' in all."""
    cart_events = cart_runs = reads = bursts = 0
    timer_lateness: list[float] = []
    carts: set[str] = set()
    shard_events = 0
    async for execution in client.list_workflows(f"TaskQueue = '{journey_queue}'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        if execution.id.startswith("cart-"):
            if len(carts) >= sample and execution.id not in carts:
                continue
            if execution.id not in carts and execution.status == WorkflowExecutionStatus.RUNNING:
                stats = await handle.query(CartWorkflow.stats)
                reads += stats.reads
                bursts += stats.bursts
            carts.add(execution.id)
            cart_events += (await handle.describe()).history_length
            cart_runs += 1
            timer_lateness.extend(await timers_late(handle))
        elif "shard" in execution.id:
            shard_events += (await handle.describe()).history_length
    return {
        "sampled_carts": len(carts),
        "history_events_per_cart": round(cart_events / max(1, len(carts)), 1),
        "runs_per_cart": round(cart_runs / max(1, len(carts)), 2),
        # commercetools reads: one per burst of changes, one per reminder due
        "commercetools_reads_per_cart": round(reads / max(1, len(carts)), 2),
        "bursts_per_cart": round(bursts / max(1, len(carts)), 2),
        "shard_history_events_total": shard_events,
        # How much later than asked Temporal fired the sampled carts' timers.
        "timer_fired_late_p99_seconds": round(percentile(timer_lateness, 0.99), 2)
        if timer_lateness
        else None,
    }


async def timers_late(handle: WorkflowHandle[Any, Any]) -> list[float]:
    """For each timer of a run that fired: seconds after it was due."""
    due: dict[int, float] = {}
    late: list[float] = []
    async for event in handle.fetch_history_events():
        at = event.event_time.ToDatetime().timestamp()
        if event.HasField("timer_started_event_attributes"):
            timeout = event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            due[event.event_id] = at + timeout.total_seconds()
        elif event.HasField("timer_fired_event_attributes"):
            started = event.timer_fired_event_attributes.started_event_id
            late.append(at - due.get(started, at))
    return late


def reminder_figures(found: list[dict[str, Any]], carts: int | None) -> dict[str, Any]:
    """Reminded, lost (of `carts`, if reminders were waited for), duplicated, and how late
    each reminder reached Insider after it was due."""
    lateness = [
        float(event["_stored_at"])
        - datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        for event in found
    ]
    groups = [event["event_params"]["event_group_id"] for event in found]
    return {
        "reminded": len(set(groups)),
        "lost": carts - len(set(groups)) if carts is not None else None,
        "duplicated": len(groups) - len(set(groups)),
        "lateness_p50_seconds": round(percentile(lateness, 0.5), 2) if lateness else None,
        "lateness_p99_seconds": round(percentile(lateness, 0.99), 2) if lateness else None,
        "lateness_max_seconds": round(max(lateness), 2) if lateness else None,
    }


def cart_worker_env(stack: Stack, task_queue: str, delay_seconds: int) -> dict[str, str]:
    """The worker's (and bridge's) settings: cart events on, one reminder after the delay."""
    return {
        **stack.worker_env(task_queue),
        "TEMPORAL_JOURNEY_SHARDS": str(SHARDS),
        "CART_EVENTS_ENABLED": "true",
        "CART_REMINDER_DELAYS": f"{delay_seconds}s",
        "CART_COALESCE_SECONDS": "1",
    }


async def run_carts(shape: CartShape) -> dict[str, Any]:
    logs = Path(".dev/bench-logs/triggers-carts")
    with local_stack(logs) as stack:
        skus = stack.seeder().catalog(30)
        started = time.monotonic()
        carts = await make_carts(stack, shape.carts, skus)
        made_seconds = time.monotonic() - started
        task_queue = f"bench-{uuid.uuid4()}"
        journey_queue = f"{task_queue}-journeys"
        port = free_port()
        env = cart_worker_env(stack, task_queue, shape.delay_seconds)
        bridge = bridge_process(stack, env, port)
        client = await connect(TemporalSettings(address=stack.temporal_address))
        actions_before = temporal_actions(stack)
        with worker_process(stack, task_queue, env=env) as worker, bridge:
            assert worker.process is not None
            processes = {**stack.servers, "worker": worker, "bridge": bridge}
            with PeakRss(worker.process.pid) as rss, CpuSeconds(processes) as cpu:
                seconds, refused = await notify(port, carts, shape.rate)
                deadline = time.monotonic() + shape.delay_seconds + 300
                found: list[dict[str, Any]] = []
                while time.monotonic() < deadline:
                    if not shape.reminders:
                        if carts_added(stack) >= shape.carts:
                            break
                    elif len(found := reminders(stack)) >= shape.carts:
                        break
                    await asyncio.sleep(1)
                armed_seconds = time.monotonic() - started
            await asyncio.sleep(3)  # late duplicates would show up now
            found = reminders(stack)
            history = await history_per_cart(client, journey_queue, sample=300)
        actions_after = temporal_actions(stack)
    actions = (
        (actions_after - actions_before) / shape.carts
        if actions_before is not None and actions_after is not None
        else None
    )
    return {
        "shape": "carts",
        "carts": shape.carts,
        "rate_offered": shape.rate,
        "delay_seconds": shape.delay_seconds,
        "carts_made_seconds": round(made_seconds, 1),
        "notify_seconds": round(seconds, 1),
        "waited_for": "reminders" if shape.reminders else "every cart armed",
        "seconds_until_done": round(armed_seconds - made_seconds, 1),
        "refused": refused,
        **reminder_figures(found, shape.carts if shape.reminders else None),
        "worker_peak_rss_mb": round(rss.peak_mb, 1),
        "temporal_actions_per_cart": round(actions, 2) if actions is not None else None,
        **history,
        "shard_history_events_per_cart": round(
            (history["shard_history_events_total"] or 0) / shape.carts, 2
        ),
        "cpu_seconds": cpu.spent,
    }


def carts_report(result: dict[str, Any]) -> str:
    return (
        "\n".join(
            f"  {key}: {value}" for key, value in result.items() if key not in ("cpu_seconds",)
        )
        + f"\n  cpu seconds: {result['cpu_seconds']}"
    )


def carts_missed(result: dict[str, Any]) -> list[str]:
    missed: list[str] = []
    if result["waited_for"] != "reminders":
        return missed  # (a cost-and-memory run: no reminders waited for)
    if result["lost"] or result["duplicated"]:
        missed.append(f"{result['lost']} lost, {result['duplicated']} duplicated")
    p99 = result["lateness_p99_seconds"]
    if p99 is None or p99 >= LATENESS_TARGET_SECONDS:
        missed.append(f"p99 lateness {p99} s (target < {LATENESS_TARGET_SECONDS:g} s)")
    return missed


async def run_carts_from(args: argparse.Namespace) -> dict[str, Any]:
    """The carts shape as `bench.triggers` runs it (--carts, --cart-rate, --delay, --armed-only)."""
    return await run_carts(
        CartShape(
            carts=args.carts,
            rate=args.cart_rate,
            delay_seconds=args.delay,
            reminders=not args.armed_only,
        )
    )
