"""Realtime path: storefront events and order messages through the bridge into Insider.

    make bench   (or: .venv/bin/python -m bench.realtime [--shape single|batched|orders|all]
                  [--events N] [--rate R] [--per-request N] [--identities N]
                  [--temporal-address HOST:PORT] [--no-floor])

Each shape (bench/traffic.py) posts its events at a fixed rate through a lean HTTP load
generator to a `ct-insider bridge` process, with a `ct-insider worker` process delivering
the journey shards, on a fresh stack (Temporal dev server, both emulators) per shape:

| shape   | requests                         | offered | target delivered |
| ------- | -------------------------------- | ------- | ---------------- |
| single  | one event each                   | 450/s   | >= 400/s         |
| batched | 25 events each                   | 1,600/s | >= 1,500/s       |
| orders  | one event each, 5% OrderCreated  | 450/s   | >= 400/s         |
| skew    | 25 each; 0.1% of visitors' clocks 5 min ahead, 3 visitors 9 h ahead; 360,000 events | 1,500/s | >= 1,450/s |
| redelivery | 25 each; 2% of requests posted again 1 to 300 s later; 540,000 events | 1,500/s | >= 1,450/s |
| bridges | 25 each, to 3 bridge processes in turn | 1,600/s | >= 1,500/s |
| reshard | as batched; 4 -> 8 shards mid-run | 1,600/s | >= 1,500/s       |

The reshard shape runs `ct-insider reshard --shards 8 --lead 10` ten seconds before the
middle of the run, so the new layout takes effect at the middle.

20,000 identities (90% anonymous). Latency is bridge accepted -> Insider emulator stored.
Every shape also needs p99 < 2 s, 0 lost, 0 duplicated (purchases included), at most 0.05
Insider upsert requests and 0.5 Temporal history events per event, no Insider profile
read (skew and redelivery: at most 0.001 per event), and worker peak RSS < 300 MB. The
redelivery shape prints the dedupe horizon (with the dedupe archive, its retention less the
clock-skew allowance, docs/design/realtime.md; without, the shards' memory at its rate):
redeliveries within it must cost no read. Before the connector, bench/temporal_floor.py runs the
same traffic through no-op shards (what Temporal alone costs in this design), side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvloop
from temporalio.client import Client
from temporalio.service import RPCError

from bench import temporal_floor
from bench.can_timeline import continue_as_new_figures
from bench.harness import (
    BRIDGE_TOKEN,
    CpuSeconds,
    PeakRss,
    Stack,
    bridge_process,
    delivery_figures,
    local_stack,
    machine,
    percentile,
    save,
    worker_process,
)
from bench.loadgen import LeanClient, at_times
from bench.traffic import SHAPES, Request, Shape, events_in, population, workload
from bridge.layout import read_layout
from ct_insider.config import TemporalSettings
from ct_insider.journeys.archive_lane import MAX_WRITTEN_OBJECTS
from ct_insider.journeys.layout import MIN_LEAD_SECONDS
from ct_insider.journeys.memory import CLOCK_SKEW_ALLOWANCE, GENERATIONS
from ct_insider.temporal import connect
from emulators.process import ct_insider_command, free_port
from workflows.journey_shard import JourneyShardWorkflow, ShardSettings, shard_workflow_id

TARGET_P99 = 2.0
MAX_UPSERTS_PER_EVENT = 0.05
MAX_HISTORY_EVENTS_PER_EVENT = 0.5
MAX_WORKER_RSS_MB = 300
SHARDS = 4
RESHARD_LEAD_SECONDS = MIN_LEAD_SECONDS


async def bridge_windows(ports: list[int]) -> dict[str, int]:
    """The windows the bridges stored in Temporal, and how (their /stats, summed)."""
    async with httpx.AsyncClient(timeout=30) as http:
        stats = [(await http.get(f"http://127.0.0.1:{port}/stats")).json() for port in ports]
    return {
        "commits": sum(s["journey_commits"] for s in stats),
        "as_updates": sum(s["journey_windows_as_updates"] for s in stats),
        "update_fallbacks": sum(s["journey_update_fallbacks"] for s in stats),
    }


async def post_on_schedule(ports: list[int], requests: list[Request]) -> tuple[float, int]:
    """Send each request at its `send_at`, to the bridges in turn; returns (seconds taken,
    non-2xx answers)."""
    failures = 0
    bridges = [LeanClient("127.0.0.1", port, BRIDGE_TOKEN) for port in ports]
    wire = [
        bridges[n % len(bridges)].request(request.path, request.body)
        for n, request in enumerate(requests)
    ]

    async def send(index: int) -> None:
        nonlocal failures
        requests[index].posted_at = time.time()
        status = await bridges[index % len(bridges)].send(wire[index])
        if status // 100 != 2:
            failures += 1
        elif not requests[index].redelivery:
            requests[index].accepted_at = time.time()

    seconds = await at_times([request.send_at for request in requests], send)
    for http in bridges:
        await http.close()
    return seconds, failures


def dedupe_horizon_minutes(shape: Shape) -> float:
    """How far back a redelivery is recognised without reading Insider: with the dedupe
    archive, its retention less the clock-skew allowance (docs/design/realtime.md); without
    it, how far the shards' memory reaches at the shape's rate (one key per event)."""
    settings = ShardSettings()
    if settings.archive_retention_minutes:
        allowance = CLOCK_SKEW_ALLOWANCE / timedelta(minutes=1)
        retained = settings.archive_retention_minutes - allowance
        # ... and at most MAX_WRITTEN_OBJECTS generations are looked up per shard.
        generation = max(1, settings.seen_capacity // GENERATIONS)
        looked_up = MAX_WRITTEN_OBJECTS * generation / (shape.rate / SHARDS) / 60
        return round(max(0.0, min(retained, looked_up)), 1)
    return round(SHARDS * settings.seen_capacity / shape.rate / 60, 1)


def stored_keys(stack: Stack) -> list[tuple[str, float]]:
    """(key, stored at) for every event the Insider emulator holds."""
    events = httpx.get(f"{stack.insider_url}/_emulator/events", timeout=300).json()["events"]
    found = []
    for event in events:
        params = event.get("event_params") or {}
        if event["event_name"] == "purchase":
            key = str(params.get("event_group_id"))
        else:
            key = str((params.get("custom") or {}).get("event_id"))
        found.append((key, float(event["_stored_at"])))
    return found


async def history_events(client: Client, task_queue: str) -> tuple[int, int]:
    """(history events, runs) of every workflow run on the task queue, continued-as-new
    runs included."""
    total = runs = 0
    async for execution in client.list_workflows(f"TaskQueue = '{task_queue}'"):
        # Visibility on the dev server does not fill in history lengths: describe each run.
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        total += (await handle.describe()).history_length
        runs += 1
    return total, runs


async def reshard_midway(env: dict[str, str], run_seconds: float, shards: int) -> dict[str, Any]:
    """`ct-insider reshard`, timed to take effect at the middle of the run; its JSON."""
    await asyncio.sleep(max(0.0, run_seconds / 2 - RESHARD_LEAD_SECONDS))
    process = await asyncio.create_subprocess_exec(
        *ct_insider_command(
            "reshard", "--shards", str(shards), "--lead", str(RESHARD_LEAD_SECONDS), "--json"
        ),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, f"ct-insider reshard exited {process.returncode}"
    scheduled: dict[str, Any] = json.loads(out)
    return scheduled


async def reshard_figures(
    client: Client, journey_queue: str, scheduled: dict[str, Any]
) -> dict[str, Any]:
    """What the reshard did: the layout now, and the shards' holds, forwards and handoffs."""
    status = await read_layout(client, journey_queue, SHARDS)
    shards = max(SHARDS, status.current.shards)
    stats = [
        await client.get_workflow_handle_for(
            JourneyShardWorkflow.run, shard_workflow_id(journey_queue, n)
        ).query(JourneyShardWorkflow.stats)
        for n in range(shards)
    ]
    return {
        "scheduled": scheduled,
        "layout_now": status.model_dump(mode="json"),
        "held": sum(s.held for s in stats),
        "forwarded": sum(s.forwarded for s in stats),
        "handoff_parts": sum(s.handoff_parts_received for s in stats),
        "delivered_by_shard": [s.delivered for s in stats],
    }


async def shard_stats(client: Client, task_queue: str) -> dict[str, int]:
    """The journey shards' own counters (current runs: each carries its predecessors'),
    summed over every shard of the layout now (a reshard adds some): why Insider was read
    (doubts, cut-short deliveries), what was dropped."""
    status = await read_layout(client, task_queue, SHARDS)
    totals: Counter[str] = Counter()
    for shard in range(max(SHARDS, status.current.shards)):
        handle = client.get_workflow_handle(shard_workflow_id(task_queue, shard))
        with contextlib.suppress(RPCError):
            stats = await handle.query(JourneyShardWorkflow.stats)
            totals.update(stats.model_dump())
    return dict(totals)


class HistorySampler:
    """Each shard's history every half second while the load runs (its run, events, bytes):
    the peak is what the bridge's backlog limit (BRIDGE_SHARD_BACKLOG_BYTES) compares
    with, and `trace` shows what a shard did as it neared it."""

    def __init__(self, client: Client, task_queue: str, path: Path) -> None:
        self._client = client
        self._task_queue = task_queue
        self._path = path
        self.peak_bytes = 0
        self.samples: list[dict[str, Any]] = []

    async def run(self) -> None:
        started = time.monotonic()
        while True:
            for shard in range(SHARDS):
                handle = self._client.get_workflow_handle(
                    shard_workflow_id(self._task_queue, shard)
                )
                with contextlib.suppress(RPCError):
                    info = (await handle.describe()).raw_description.workflow_execution_info
                    self.peak_bytes = max(self.peak_bytes, info.history_size_bytes)
                    self.samples.append(
                        {
                            "t": round(time.monotonic() - started, 2),
                            "shard": shard,
                            "run": info.execution.run_id[:8],
                            "events": info.history_length,
                            "bytes": info.history_size_bytes,
                        }
                    )
            await asyncio.sleep(0.5)

    def save(self) -> None:
        self._path.write_text("\n".join(json.dumps(sample) for sample in self.samples))


def temporal_actions(stack: Stack) -> float | None:
    """The dev server's `action` counter (Temporal Cloud's metering) for the namespace."""
    if stack.temporal_metrics_url is None:
        return None
    total = 0.0
    for line in httpx.get(stack.temporal_metrics_url, timeout=30).text.splitlines():
        if line.startswith("action{") and 'namespace="default"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def run_shape(shape: Shape, identities: int, temporal_address: str | None) -> dict[str, Any]:
    logs = Path(f".dev/bench-logs/realtime-{shape.name}")
    with local_stack(logs, temporal_address) as stack:
        seeder = stack.seeder()
        skus = seeder.catalog(50)
        orders: list[dict[str, Any]] = []
        if shape.order_share:
            customers = seeder.customers(1_000)
            count = int(shape.events * shape.order_share)
            seeder.orders(count, customers, skus)
            orders = [
                order
                for offset in range(0, count, 500)
                for order in stack.ct("GET", f"orders?limit=500&offset={offset}")["results"]
            ]
        requests = workload(shape, population(identities, 0.1), skus, orders)
        task_queue = f"bench-{uuid.uuid4()}"
        journey_queue = f"{task_queue}-journeys"
        bridge_ports = [free_port() for _ in range(shape.bridges)]
        env = {
            **stack.worker_env(task_queue),
            "TEMPORAL_JOURNEY_SHARDS": str(SHARDS),
        }
        bridges = {
            f"bridge-{n}" if shape.bridges > 1 else "bridge": bridge_process(
                stack, env, port, log_name=f"bridge-{n}"
            )
            for n, port in enumerate(bridge_ports)
        }
        expected = events_in(requests)
        client = await connect(TemporalSettings(address=stack.temporal_address))
        actions_before = temporal_actions(stack)
        with worker_process(stack, task_queue, env=env) as worker, contextlib.ExitStack() as up:
            for bridge in bridges.values():
                up.enter_context(bridge)
            assert worker.process is not None
            processes = {**stack.servers, "worker": worker, **bridges}
            with PeakRss(worker.process.pid) as rss, CpuSeconds(processes) as cpu:
                resharding = (
                    asyncio.create_task(
                        reshard_midway(env, shape.events / shape.rate, shape.reshard_to)
                    )
                    if shape.reshard_to
                    else None
                )
                sampler = HistorySampler(client, journey_queue, stack.logs / "histories.jsonl")
                sampling = asyncio.create_task(sampler.run())
                seconds, refused = await post_on_schedule(bridge_ports, requests)
                windows = await bridge_windows(bridge_ports)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    if stack.insider_stats()["events"] >= expected:
                        break
                    await asyncio.sleep(0.5)
            await asyncio.sleep(2)  # late duplicates would show up now
            sampling.cancel()
            sampler.save()
            stored = stored_keys(stack)
            insider = stack.insider_stats()
            history, runs = await history_events(client, journey_queue)
            shards = await shard_stats(client, journey_queue)
            continuing = await continue_as_new_figures(client, journey_queue)
            reshard = (
                await reshard_figures(client, journey_queue, await resharding)
                if resharding is not None
                else None
            )
        actions_after = temporal_actions(stack)
    counts = Counter(key for key, _ in stored)
    first_store: dict[str, float] = {}
    for key, at in stored:
        first_store[key] = min(at, first_store.get(key, at))
    originals = [request for request in requests if not request.redelivery]
    keys = [(key, n, request.accepted_at) for request in originals for key, n in request.keys]
    # Latency runs from the post (the sender's view): the bridge answers once the shard took
    # the events, so its answer may come after their delivery.
    posted = [
        request.posted_at if request.accepted_at is not None else None
        for request in originals
        for _ in request.keys
    ]
    delivered = sum(min(n, counts[key]) for key, n, _ in keys)
    upserts = int(insider["requests"].get("upsert", 0))
    return {
        "shape": shape.name,
        "per_request": shape.per_request,
        "identities": identities,
        "shards": SHARDS,
        "requests_posted": len(requests),
        "bridges": shape.bridges,
        "requests_redelivered": len(requests) - len(originals),
        "dedupe_horizon_minutes": dedupe_horizon_minutes(shape),
        "insider_events_expected": expected,
        "rate_offered": shape.rate,
        "refused": refused,
        "bridge_windows": windows,
        **delivery_figures(
            posted,
            [first_store.get(key) for key, _, _ in keys],
            seconds,
            cpu,
        ),
        # Lost: acknowledged (2xx) and not in Insider. The events of a refused request (503:
        # the sender keeps them and posts again) are counted apart.
        "lost": sum(max(0, n - counts[key]) for key, n, accepted in keys if accepted),
        "refused_not_stored": sum(
            max(0, n - counts[key]) for key, n, accepted in keys if not accepted
        ),
        "duplicated": sum(max(0, counts[key] - n) for key, n, _ in keys),
        "bridge_answer_p99": round(
            percentile(
                [
                    request.accepted_at - request.posted_at
                    for request in originals
                    if request.posted_at is not None and request.accepted_at is not None
                ]
                or [0.0],
                0.99,
            ),
            3,
        ),
        "insider_upsert_requests": upserts,
        "insider_upserts_per_event": round(upserts / max(1, delivered), 4),
        "insider_profile_reads": int(insider["requests"].get("profile", 0)),
        "temporal_history_events": history,
        "temporal_workflow_runs": runs,
        "temporal_history_events_per_event": round(history / max(1, delivered), 3),
        "temporal_actions_per_event": (
            round((actions_after - actions_before) / max(1, delivered), 3)
            if actions_before is not None and actions_after is not None
            else None
        ),
        "worker_peak_rss_mb": round(rss.peak_mb, 1),
        **({"reshard": reshard} if reshard is not None else {}),
        "shard_stats": shards,
        "peak_shard_history_bytes": sampler.peak_bytes,
        "continue_as_new": continuing,
    }


def met(result: dict[str, Any], shape: Shape) -> list[str]:
    """The targets a result missed (empty: all met)."""
    misses = []
    target_rate = shape.target_rate
    if result["delivered_per_second"] < target_rate:
        misses.append(f"delivered {result['delivered_per_second']}/s < {target_rate}/s")
    if result["latency_p99"] is None or result["latency_p99"] >= TARGET_P99:
        misses.append(f"p99 {result['latency_p99']} s >= {TARGET_P99} s")
    if result["refused"]:
        misses.append(f"{result['refused']} requests refused (503)")
    if result["lost"] or result["duplicated"]:
        misses.append(f"lost {result['lost']}, duplicated {result['duplicated']}")
    if result["insider_upserts_per_event"] > MAX_UPSERTS_PER_EVENT:
        misses.append(f"{result['insider_upserts_per_event']} upserts per event")
    if result["temporal_history_events_per_event"] > MAX_HISTORY_EVENTS_PER_EVENT:
        misses.append(f"{result['temporal_history_events_per_event']} history events per event")
    reads = result["insider_profile_reads"]
    if reads > shape.max_reads_per_event * result["insider_events_expected"]:
        misses.append(f"{reads} profile reads")
    if result["worker_peak_rss_mb"] >= MAX_WORKER_RSS_MB:
        misses.append(f"worker peak RSS {result['worker_peak_rss_mb']} MB")
    if "reshard" in result and result["reshard"]["layout_now"]["next"] is not None:
        misses.append("the reshard did not complete")
    return misses


def cpu_total(result: dict[str, Any]) -> float:
    return float(sum(result["cpu_ms_per_event"].values()))


def report(result: dict[str, Any], floor: dict[str, Any] | None, shape: Shape) -> str:
    target = shape.target_rate
    lines = [
        f"  accepted by the bridge  {result['accepted_per_second']:>8} events/s "
        f"(refused requests {result['refused']})",
        f"  delivered to Insider    {result['delivered_per_second']:>8} events/s "
        f"(target >= {target:.0f})",
        f"  latency p50/p95/p99     {result['latency_p50']} / {result['latency_p95']} / "
        f"{result['latency_p99']} s from the post (target p99 < {TARGET_P99}); the bridge "
        f"answered in {result['bridge_answer_p99']} s (p99)",
        f"  p99 by tenth of run     {result['latency_p99_by_tenth_of_run']}",
        f"  lost / duplicated       {result['lost']} / {result['duplicated']} "
        f"(events of refused requests, not stored: {result['refused_not_stored']})",
        f"  Insider upserts/event   {result['insider_upserts_per_event']} "
        f"({result['insider_upsert_requests']} requests; target <= {MAX_UPSERTS_PER_EVENT}), "
        f"profile reads {result['insider_profile_reads']}",
        f"  Temporal history/event  {result['temporal_history_events_per_event']} "
        f"({result['temporal_history_events']} events in {result['temporal_workflow_runs']} "
        f"runs; target <= {MAX_HISTORY_EVENTS_PER_EVENT}); actions/event "
        f"{result['temporal_actions_per_event']}; peak shard history "
        f"{result['peak_shard_history_bytes'] / 1e6:.1f} MB (the bridge refuses beyond 8 MB)",
        f"  worker peak RSS         {result['worker_peak_rss_mb']} MB",
        "  bridge windows          {commits} stored, {as_updates} of them as updates (shards "
        "giving notice of continuing-as-new), {update_fallbacks} updates not taken in time".format(
            **result["bridge_windows"]
        ),
        "  continue-as-new         {continued_as_new} runs, pause p50 {pause_p50_seconds} s, "
        "max {pause_max_seconds} s; continuing tasks refused {continuing_tasks_refused}".format(
            **result["continue_as_new"]
        ),
        "  shards: "
        + ", ".join(
            f"{name} {result['shard_stats'].get(name, 0)}"
            for name in (
                "duplicates",
                "archived_duplicates",
                "in_doubt",
                "cut_short",
                "failed_deliveries",
                "archived_objects",
                "runs",
            )
        ),
        f"  CPU ms per event        {result['cpu_ms_per_event']}",
    ]
    if "reshard" in result:
        reshard = result["reshard"]
        now = reshard["layout_now"]["current"]
        lines.append(
            f"  reshard                 now layout {now['epoch']} ({now['shards']} shards); "
            f"held {reshard['held']}, forwarded {reshard['forwarded']}, handoff parts "
            f"{reshard['handoff_parts']}, delivered by shard {reshard['delivered_by_shard']}"
        )
    if floor is not None:
        lines += [
            f"  Temporal floor (no-op shards, same traffic): {temporal_floor.summary(floor)}",
            f"  connector / floor: delivered "
            f"{result['delivered_per_second'] / max(1e-9, floor['delivered_per_second']):.2f}, "
            f"CPU per event {cpu_total(result) / max(1e-9, cpu_total(floor)):.2f}",
        ]
    if shape.redelivered_share:
        lines.insert(
            0,
            f"  dedupe horizon          {result['dedupe_horizon_minutes']} min at this rate "
            f"({result['requests_redelivered']} requests posted again 1 to 300 s later; "
            f"{result['shard_stats'].get('duplicates', 0)} duplicates dropped, "
            f"{result['shard_stats'].get('archived_duplicates', 0)} of them found in the "
            "dedupe archive)",
        )
    misses = met(result, shape)
    lines.append("  targets: " + ("all met" if not misses else "MISSED " + "; ".join(misses)))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=[*SHAPES, "all"], default="all")
    parser.add_argument("--events", type=int, help="events per shape (default: the shape's)")
    parser.add_argument("--rate", type=float, help="events per second offered")
    parser.add_argument("--per-request", type=int, help="storefront events per request")
    parser.add_argument("--identities", type=int, default=20_000)
    parser.add_argument(
        "--temporal-address",
        help="use this Temporal server (namespace default) instead of a dev server here",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the Temporal floor runs")
    args = parser.parse_args()
    shapes = list(SHAPES.values()) if args.shape == "all" else [SHAPES[args.shape]]
    results: dict[str, Any] = {}
    ok = True
    for base in shapes:
        shape = dataclasses.replace(
            base,
            per_request=args.per_request or base.per_request,
            rate=args.rate or base.rate,
            events=args.events or base.events,
        )
        floor = None
        if not args.no_floor and args.temporal_address is None:
            floor = uvloop.run(temporal_floor.run(shape, args.identities, SHARDS))
        # uvloop keeps the load generator's own CPU low (it shares the cores measured).
        result = uvloop.run(run_shape(shape, args.identities, args.temporal_address))
        if floor is not None:
            result["temporal_floor"] = floor
        info = machine()
        print(
            f"\nrealtime, shape {shape.name}: {shape.events:,} events, {shape.per_request} per "
            f"request, {args.identities:,} identities, {shape.rate:.0f}/s offered, "
            f"{SHARDS} shards, on {info['cpu']} ({info['cores']} cores, {info['memory_gib']} "
            f"GiB; speed probe {info['speed_probe_seconds']} s):\n" + report(result, floor, shape),
            flush=True,
        )
        results[shape.name] = result
        ok = ok and not met(result, shape)
    print(f"  saved to {save('realtime', results)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
