"""Customer backfill throughput: Temporal worker vs a bare loop, side by side in one run.

    make bench            (or: .venv/bin/python -m bench.backfill [--customers N] [--rounds R])

Seeds N customers (default 50,000) into the commercetools emulator, then alternates R
rounds of (bare loop, Temporal backfill), resetting the Insider emulator before each so
both do the same work. The bare loop uses the same clients, mapping and paging pipeline
in this process, without Temporal. Prints records/s of each, their ratio, and the
worker process's peak RSS. Targets (issue 3): ratio >= 0.8, peak RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.harness import PeakRss, Stack, local_stack, machine, save, worker_process
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import TemporalSettings
from ct_insider.insider.client import InsiderClient
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.customers import CUSTOMER_EXPAND, send_customer_batch
from ct_insider.sync.pipeline import sync_window
from ct_insider.sync.window import Window
from ct_insider.temporal import connect
from starters.backfill import start_backfill
from workflows.backfill import BackfillInput

TARGET_RATIO = 0.8
TARGET_RSS_MB = 300


async def bare_loop(stack: Stack, expected: int) -> float:
    async with (
        CommercetoolsClient(stack.ct_settings()) as ct,
        InsiderClient(stack.insider_settings()) as insider,
    ):
        started = time.monotonic()
        outcome = await sync_window(
            ct,
            "customers",
            partial(send_customer_batch, insider, config=MappingConfig(), skip_hook=True),
            window=Window(),
            after_id=None,
            batch_size=1_000,
            expand=CUSTOMER_EXPAND,
        )
        elapsed = time.monotonic() - started
    if outcome.stats.sent != expected:
        raise RuntimeError(f"bare loop sent {outcome.stats.sent} of {expected}")
    return elapsed


async def through_temporal(stack: Stack, client: Client, expected: int) -> tuple[float, float]:
    task_queue = f"bench-{uuid.uuid4()}"
    with worker_process(stack, task_queue) as worker:
        assert worker.process is not None
        with PeakRss(worker.process.pid) as rss:
            started = time.monotonic()
            handle = await start_backfill(client, task_queue, BackfillInput(target="customers"))
            result = await handle.result()
            elapsed = time.monotonic() - started
    if result.stats.sent != expected:
        raise RuntimeError(f"backfill sent {result.stats.sent} of {expected}")
    return elapsed, rss.peak_mb


async def connect_when_up(address: str, wait_seconds: float = 60.0) -> Client:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await connect(TemporalSettings(address=address))
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def run(customers: int, rounds: int) -> dict[str, Any]:
    with local_stack(Path(".dev/bench-logs/backfill")) as stack:
        started = time.monotonic()
        stack.seeder().customers(customers)
        print(f"seeded {customers:,} customers in {time.monotonic() - started:.1f} s", flush=True)
        client = await connect_when_up(stack.temporal_address)
        bare: list[float] = []
        temporal: list[float] = []
        peaks: list[float] = []
        for round_number in range(1, rounds + 1):
            stack.reset_insider()
            bare.append(await bare_loop(stack, customers))
            stack.reset_insider()
            seconds, peak = await through_temporal(stack, client, customers)
            temporal.append(seconds)
            peaks.append(peak)
            users = stack.insider_stats()["users"]
            if users != customers:
                raise RuntimeError(f"Insider holds {users} users, expected {customers}")
            print(
                f"round {round_number}: bare {customers / bare[-1]:,.0f} rec/s, "
                f"temporal {customers / temporal[-1]:,.0f} rec/s, "
                f"ratio {bare[-1] / temporal[-1]:.2f}, worker peak RSS {peak:.0f} MB",
                flush=True,
            )
    bare_rps = customers / statistics.mean(bare)
    temporal_rps = customers / statistics.mean(temporal)
    return {
        "customers": customers,
        "rounds": rounds,
        "bare_seconds": bare,
        "temporal_seconds": temporal,
        "bare_records_per_second": round(bare_rps),
        "temporal_records_per_second": round(temporal_rps),
        "ratio": round(temporal_rps / bare_rps, 3),
        "worker_peak_rss_mb": round(max(peaks), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    result = asyncio.run(run(args.customers, args.rounds))
    info = machine()
    print(
        f"\nbackfill of {result['customers']:,} customers on {info['cpu']} "
        f"({info['cores']} cores, {info['memory_gib']} GiB):\n"
        f"  Temporal backfill  {result['temporal_records_per_second']:>8,} records/s\n"
        f"  bare loop          {result['bare_records_per_second']:>8,} records/s\n"
        f"  ratio              {result['ratio']:>8.2f}   (target >= {TARGET_RATIO})\n"
        f"  worker peak RSS    {result['worker_peak_rss_mb']:>8.0f} MB (target < {TARGET_RSS_MB})"
    )
    print(f"  saved to {save('backfill', result)}")
    ok = result["ratio"] >= TARGET_RATIO and result["worker_peak_rss_mb"] < TARGET_RSS_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
