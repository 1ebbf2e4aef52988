"""Customer backfill throughput: Temporal worker vs a bare loop, side by side in one run.

    make bench            (or: .venv/bin/python -m bench.backfill [--customers N] [--rounds R])

Seeds N customers (default 50,000) into the commercetools emulator, then alternates R
rounds of (bare loop, Temporal backfill), resetting the Insider emulator before each so
both do the same work. The bare loop uses the same clients, mapping and paging pipeline
in this process, without Temporal. Prints records/s of each, their ratio, and the
worker process's peak RSS. Targets (issue 3): ratio >= 0.8, peak RSS < 300 MB.

    .venv/bin/python -m bench.backfill --sizes 100000,1000000 [--profile]

instead compares, across populations, the CPU seconds per 1,000 records of each process
(ours, both emulators, Temporal) in the bare loop and the Temporal backfill, the worker's
peak RSS and the emulators' memory: whose work or memory grows faster than the population
(issue 19).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import psutil
from temporalio.client import Client

from bench.harness import (
    CpuSeconds,
    PeakRss,
    Stack,
    local_stack,
    machine,
    save,
    worker_process,
)
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


async def through_temporal(
    stack: Stack, client: Client, expected: int, cpu: dict[str, float] | None = None
) -> tuple[float, float]:
    """(seconds, worker peak RSS MB); `cpu` receives the CPU seconds each process (the
    worker's included) spent in the run."""
    task_queue = f"bench-{uuid.uuid4()}"
    with worker_process(stack, task_queue) as worker:
        assert worker.process is not None
        processes = {**stack.servers, "worker": worker}
        with PeakRss(worker.process.pid) as rss, CpuSeconds(processes) as spent:
            started = time.monotonic()
            handle = await start_backfill(client, task_queue, BackfillInput(target="customers"))
            result = await handle.result()
            elapsed = time.monotonic() - started
    if cpu is not None:
        cpu.update(spent.spent)
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


# Process names in the scale comparison's table, in order; "ours" is this process in the
# bare loop and the worker process in the Temporal backfill.
SCALE_PROCESSES = ("ours", "commercetools emulator", "insider emulator", "temporal")


def rss_mb(stack: Stack) -> dict[str, float]:
    """Resident memory of each server process now (MB)."""
    sizes: dict[str, float] = {}
    for name, server in stack.servers.items():
        if server.process is None:
            continue
        try:
            tree = [psutil.Process(server.process.pid)]
            tree += tree[0].children(recursive=True)
            sizes[name] = round(sum(p.memory_info().rss for p in tree) / 2**20, 1)
        except psutil.Error:
            continue
    return sizes


async def scale_run(customers: int, profile: bool = False) -> dict[str, Any]:
    """CPU seconds per 1,000 records of each process in the bare loop and the Temporal
    backfill for one population, the worker's peak RSS and the emulators' memory."""
    logs = Path(f".dev/bench-logs/backfill-scale-{customers}")
    with local_stack(logs) as stack:
        started = time.monotonic()
        stack.seeder().customers(customers)
        seeding = time.monotonic() - started
        memory_seeded = rss_mb(stack)
        print(
            f"{customers:>9,} customers seeded in {seeding:.1f} s; RSS MB {memory_seeded}",
            flush=True,
        )
        client = await connect_when_up(stack.temporal_address)
        phases: dict[str, dict[str, Any]] = {}

        def record(phase: str, seconds: float, spent: dict[str, float], **extra: Any) -> None:
            spent = {
                ("ours" if k in ("benchmark client", "worker") else k): v for k, v in spent.items()
            }
            phases[phase] = {
                "seconds": round(seconds, 2),
                "records_per_second": round(customers / seconds),
                "cpu_seconds": spent,
                "cpu_seconds_per_1000_records": {
                    name: round(1000 * spent.get(name, 0.0) / customers, 3)
                    for name in SCALE_PROCESSES
                },
                "rss_mb_after": rss_mb(stack),
                **extra,
            }
            per_1000 = phases[phase]["cpu_seconds_per_1000_records"]
            print(
                f"{customers:>9,} customers {phase:<18} {seconds:7.1f} s  CPU s / 1,000 "
                "records: "
                + ", ".join(f"{name} {value:.3f}" for name, value in per_1000.items())
                + "".join(f"; {k} {v}" for k, v in extra.items())
                + f"; RSS MB after {phases[phase]['rss_mb_after']}",
                flush=True,
            )

        stack.reset_insider()
        profiler = cProfile.Profile() if profile else None
        with CpuSeconds(stack.servers) as cpu:
            if profiler is not None:
                profiler.enable()
            seconds = await bare_loop(stack, customers)
            if profiler is not None:
                profiler.disable()
        record("bare loop", seconds, cpu.spent)
        if profiler is not None:
            path = logs / "bare-loop.prof"
            profiler.dump_stats(path)
            print(f"  profile of this process: {path}", flush=True)
        stack.reset_insider()
        spent: dict[str, float] = {}
        seconds, peak = await through_temporal(stack, client, customers, spent)
        spent.pop("benchmark client", None)
        users = stack.insider_stats()["users"]
        if users != customers:
            raise RuntimeError(f"Insider holds {users} users, expected {customers}")
        record("temporal backfill", seconds, spent, worker_peak_rss_mb=round(peak, 1))
    return {
        "customers": customers,
        "seeding_seconds": round(seeding, 1),
        "rss_mb_seeded": memory_seeded,
        "phases": phases,
    }


def scale_main(sizes: list[int], profile: bool) -> int:
    runs = []
    for size in sizes:
        runs.append(asyncio.run(scale_run(size, profile)))
        save("backfill-scale", {"sizes": runs})  # what is done survives a later failure
    print(
        f"\n{'customers':>10} {'phase':<18} {'wall s':>8} "
        + " ".join(f"{n[:14]:>14}" for n in SCALE_PROCESSES)
        + f" {'worker RSS':>10}"
    )
    for result in runs:
        for phase, figures in result["phases"].items():
            per_1000 = figures["cpu_seconds_per_1000_records"]
            print(
                f"{result['customers']:>10,} {phase:<18} {figures['seconds']:>8.1f} "
                + " ".join(f"{per_1000[n]:>14.3f}" for n in SCALE_PROCESSES)
                + f" {figures.get('worker_peak_rss_mb', ''):>10}"
            )
    print(f"  saved to {save('backfill-scale', {'sizes': runs})}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--sizes",
        help="comma-separated populations: instead of the targets, compare CPU seconds per "
        "1,000 records of each process, worker RSS and emulator memory across them "
        "(e.g. 100000,1000000)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --sizes: cProfile this process in the bare loop (.prof file in the logs; "
        "the profiler's overhead inflates that run's figures)",
    )
    args = parser.parse_args()
    if args.sizes:
        return scale_main([int(s) for s in args.sizes.split(",")], args.profile)
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
