"""Catalog sync: full sync through Temporal vs a bare loop, and a no-change re-sync.

    make bench            (or: .venv/bin/python -m bench.catalog [--products N])

Seeds N products of 3 variants (default 6,667: ~20,000 variants) with prices in 3 markets,
then, in one run: a bare full sync (same clients, mapping and sender, no Temporal), the
Temporal full sync (`sync catalog --full` on a worker process), a catalog delta window in
which nothing changed, and a reconciliation (`sync catalog`: every product re-read and
compared with what Insider holds) with nothing changed. Targets (issue 5): full sync >= 0.8 of the bare loop;
the no-change re-sync < 10% of the full sync's time with zero records sent; worker peak
RSS < 300 MB.

    .venv/bin/python -m bench.catalog --sizes 2000,6000,18000 [--temporal] [--profile]

instead compares, across catalog sizes, the CPU seconds per 1,000 items of each process (ours,
both emulators, Temporal) in a bare full sync and a bare reconciliation (and with --temporal
the full sync and the reconciliation through a worker, and an idle delta window): whose work
grows faster than the catalog (issue 19).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from activities.sync import path_of
from bench.backfill import connect_when_up
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
from ct_insider.insider.client import InsiderClient
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.catalog import CatalogMode, CatalogSender
from ct_insider.sync.fingerprints import FingerprintStore
from ct_insider.sync.pipeline import sync_window
from ct_insider.sync.taxonomy import TaxonomyResolver
from ct_insider.sync.window import Window
from starters.backfill import start_backfill
from starters.delta import start_delta
from workflows.backfill import BackfillInput
from workflows.delta import DeltaSyncInput, DeltaSyncWorkflow

TARGET_RATIO = 0.8
TARGET_NO_CHANGE_SHARE = 0.10
TARGET_RSS_MB = 300


async def bare_full_sync(stack: Stack, mode: CatalogMode = "full") -> tuple[float, int]:
    """A full sync (or, with mode "changes", a reconciliation) in this process, no Temporal:
    (seconds, items sent)."""
    async with (
        CommercetoolsClient(stack.ct_settings()) as ct,
        InsiderClient(stack.insider_settings()) as insider,
    ):
        sender = CatalogSender(
            ct, insider, TaxonomyResolver(ct), MappingConfig().catalog, FingerprintStore(ct)
        )
        started = time.monotonic()

        async def send(records: list[dict[str, Any]]) -> Any:
            return await sender.send_products(records, mode=mode)

        outcome = await sync_window(
            ct, "products", send, window=Window(), after_id=None, batch_size=1_000
        )
        # The same sweep for deleted products that the Temporal full sync ends with.
        sweep = await sync_window(
            ct,
            path_of("catalog-sweep"),
            sender.hide_vanished,
            window=Window(),
            after_id=None,
            batch_size=1_000,
        )
        return time.monotonic() - started, outcome.stats.sent + sweep.stats.sent


async def temporal_sync(
    stack: Stack, mode: str, cpu: dict[str, float] | None = None
) -> tuple[float, int, int, float]:
    """(seconds, items sent, Insider catalog requests, worker peak RSS MB); `cpu` receives
    the CPU seconds each process (the worker's included) spent in the run."""
    client = await connect_when_up(stack.temporal_address)
    task_queue = f"bench-{uuid.uuid4()}"
    requests_before = _catalog_requests(stack)
    with worker_process(stack, task_queue) as worker:
        assert worker.process is not None
        processes = {**stack.servers, "worker": worker}
        with PeakRss(worker.process.pid) as rss, CpuSeconds(processes) as spent:
            started = time.monotonic()
            handle = await start_backfill(
                client,
                task_queue,
                BackfillInput(
                    target="catalog", catalog_mode="full" if mode == "full" else "changes"
                ),
            )
            result = await handle.result()
            elapsed = time.monotonic() - started
    if cpu is not None:
        cpu.update(spent.spent)
    return elapsed, result.stats.sent, _catalog_requests(stack) - requests_before, rss.peak_mb


async def no_change_delta(stack: Stack) -> tuple[float, int, int]:
    """A catalog delta window in which nothing changed: (seconds, items sent, requests)."""
    client = await connect_when_up(stack.temporal_address)
    task_queue = f"bench-{uuid.uuid4()}"
    requests_before = _catalog_requests(stack)
    with worker_process(stack, task_queue, name="delta-worker"):
        handle = await start_delta(
            client,
            task_queue,
            DeltaSyncInput(
                entity="catalog",
                watermark=datetime.now(UTC),
                interval_seconds=1.0,
                safety_margin_seconds=0.2,
                overlap_seconds=0.0,
            ),
        )
        status = None
        for _ in range(300):
            status = await handle.query(DeltaSyncWorkflow.status)
            if status is not None and status.windows >= 2:
                break
            await asyncio.sleep(0.2)
        await handle.terminate("bench over")
    assert status is not None
    assert status.last_run is not None
    run = status.last_run
    seconds = (run.finished_at - run.started_at).total_seconds()
    return seconds, run.stats.sent, _catalog_requests(stack) - requests_before


def _catalog_requests(stack: Stack) -> int:
    return int(stack.insider_stats()["requests"].get("catalog", 0))


async def run(products: int) -> dict[str, Any]:
    with local_stack(Path(".dev/bench-logs/catalog")) as stack:
        started = time.monotonic()
        variants = len(stack.seeder().catalog(products))
        print(
            f"seeded {products:,} products, {variants:,} variants in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        # Warm-up: fills the fingerprint store, so both measured runs find it as full as
        # a real re-sync does (an empty store makes every lookup cheaper).
        await bare_full_sync(stack)
        bare_runs: list[float] = []
        full_runs: list[float] = []
        for round_number in (1, 2):
            stack.reset_insider()
            bare_seconds, bare_sent = await bare_full_sync(stack)
            bare_runs.append(bare_seconds)
            stack.reset_insider()
            full_seconds, full_sent, full_requests, full_rss = await temporal_sync(stack, "full")
            full_runs.append(full_seconds)
            print(
                f"round {round_number}: bare {bare_sent:,} items in {bare_seconds:.1f} s, "
                f"temporal {full_sent:,} items in {full_seconds:.1f} s",
                flush=True,
            )
        bare_seconds, full_seconds = statistics.mean(bare_runs), statistics.mean(full_runs)
        delta_seconds, delta_sent, delta_requests = await no_change_delta(stack)
        print(f"no-change delta window: {delta_sent} items in {delta_seconds:.2f} s", flush=True)
        same_seconds, same_sent, same_requests, same_rss = await temporal_sync(stack, "changes")
        print(
            f"reconciliation (re-read all): {same_sent} items in {same_seconds:.1f} s", flush=True
        )
    return {
        "products": products,
        "variants": variants,
        "items": full_sent,
        "bare_seconds": round(bare_seconds, 2),
        "bare_items_per_second": round(bare_sent / bare_seconds),
        "full_seconds": round(full_seconds, 2),
        "full_items_per_second": round(full_sent / full_seconds),
        "full_insider_requests": full_requests,
        "ratio": round(bare_seconds / full_seconds, 3),
        "no_change_seconds": round(delta_seconds, 3),
        "no_change_items_sent": delta_sent,
        "no_change_insider_requests": delta_requests,
        "no_change_share_of_full": round(delta_seconds / full_seconds, 4),
        "reconcile_seconds": round(same_seconds, 2),
        "reconcile_items_sent": same_sent,
        "reconcile_insider_requests": same_requests,
        "worker_peak_rss_mb": round(max(full_rss, same_rss), 1),
    }


# Process names in the scale comparison's table, in order; "ours" is this process in the
# bare phases and the worker process in the Temporal one.
SCALE_PROCESSES = ("ours", "commercetools emulator", "insider emulator", "temporal")


async def scale_run(products: int, temporal: bool, profile: bool = False) -> dict[str, Any]:
    """CPU seconds per 1,000 items of each process, per phase, for one catalog size: shows
    whose work grows faster than the catalog (issue 19)."""
    logs = Path(f".dev/bench-logs/catalog-scale-{products}")
    with local_stack(logs) as stack:
        variants = len(stack.seeder().catalog(products))
        items = variants * len(MappingConfig().catalog.markets)
        await bare_full_sync(stack)  # warm-up: the fingerprint store as full as in a re-sync
        phases: dict[str, dict[str, Any]] = {}

        def record(
            phase: str,
            seconds: float,
            sent: int,
            spent: dict[str, float],
            scanned: int,
            **extra: Any,
        ) -> None:
            spent = {
                ("ours" if k in ("benchmark client", "worker") else k): v for k, v in spent.items()
            }
            phases[phase] = {
                "seconds": round(seconds, 2),
                "items_sent": sent,
                "cpu_seconds": spent,
                "commercetools_objects_scanned_per_item": round(scanned / items, 2),
                "cpu_seconds_per_1000_items": {
                    name: round(1000 * spent.get(name, 0.0) / items, 3) for name in SCALE_PROCESSES
                },
                **extra,
            }
            per_1000 = phases[phase]["cpu_seconds_per_1000_items"]
            print(
                f"{products:>7,} products {phase:<24} {seconds:7.1f} s  CPU s / 1,000 items: "
                + ", ".join(f"{name} {value:.3f}" for name, value in per_1000.items())
                + f"; commercetools objects scanned per item {scanned / items:.1f}"
                + "".join(f"; {k} {v}" for k, v in extra.items()),
                flush=True,
            )

        bare: tuple[tuple[str, CatalogMode], ...] = (
            ("bare full sync", "full"),
            ("bare reconciliation", "changes"),
        )
        for phase, mode in bare:
            stack.reset_insider()
            profiler = cProfile.Profile() if profile else None
            scanned = stack.ct_scanned()
            with CpuSeconds(stack.servers) as cpu:
                if profiler is not None:
                    profiler.enable()
                seconds, sent = await bare_full_sync(stack, mode)
                if profiler is not None:
                    profiler.disable()
            record(phase, seconds, sent, cpu.spent, stack.ct_scanned() - scanned)
            if profiler is not None:
                path = logs / f"{phase.replace(' ', '-')}.prof"
                profiler.dump_stats(path)
                print(f"  profile of this process: {path}", flush=True)
        if temporal:
            temporal_phases = (
                ("temporal full sync", "full"),
                ("temporal reconciliation", "changes"),
            )
            for phase, temporal_mode in temporal_phases:
                if temporal_mode == "full":
                    stack.reset_insider()
                spent: dict[str, float] = {}
                scanned = stack.ct_scanned()
                seconds, sent, requests, peak = await temporal_sync(stack, temporal_mode, spent)
                spent.pop("benchmark client", None)
                record(
                    phase,
                    seconds,
                    sent,
                    spent,
                    stack.ct_scanned() - scanned,
                    insider_requests=requests,
                    worker_peak_rss_mb=round(peak, 1),
                )
            delta_seconds, delta_sent, delta_requests = await no_change_delta(stack)
            phases["idle delta window"] = {
                "seconds": round(delta_seconds, 3),
                "items_sent": delta_sent,
                "insider_requests": delta_requests,
            }
            print(
                f"{products:>7,} products idle delta window: {delta_sent} items, "
                f"{delta_requests} requests in {delta_seconds:.2f} s",
                flush=True,
            )
    return {"products": products, "variants": variants, "items": items, "phases": phases}


def scale_main(sizes: list[int], temporal: bool, profile: bool) -> int:
    runs = []
    for size in sizes:
        runs.append(asyncio.run(scale_run(size, temporal, profile)))
        save("catalog-scale", {"sizes": runs})  # what is done survives a later failure
    print(
        f"\n{'products':>9} {'items':>9} {'phase':<24} "
        + " ".join(f"{n[:14]:>14}" for n in SCALE_PROCESSES)
    )
    for result in runs:
        for phase, figures in result["phases"].items():
            if "cpu_seconds_per_1000_items" not in figures:
                continue  # the idle delta window: printed above
            per_1000 = figures["cpu_seconds_per_1000_items"]
            print(
                f"{result['products']:>9,} {result['items']:>9,} {phase:<24} "
                + " ".join(f"{per_1000[n]:>14.3f}" for n in SCALE_PROCESSES)
            )
    print(f"  saved to {save('catalog-scale', {'sizes': runs})}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=6_667)
    parser.add_argument(
        "--sizes",
        help="comma-separated product counts: instead of the targets, compare CPU seconds per "
        "1,000 items of each process across these sizes (e.g. 2000,6000,18000)",
    )
    parser.add_argument(
        "--temporal",
        action="store_true",
        help="with --sizes: also run the full sync and the reconciliation through Temporal (a "
        "worker process: its peak RSS) and an idle catalog delta window",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --sizes: cProfile this process in the bare phases (.prof files in the logs; "
        "the profiler's overhead inflates that run's figures)",
    )
    args = parser.parse_args()
    if args.sizes:
        return scale_main([int(s) for s in args.sizes.split(",")], args.temporal, args.profile)
    result = asyncio.run(run(args.products))
    info = machine()
    print(
        f"\ncatalog: {result['variants']:,} variants x 3 markets = {result['items']:,} items on "
        f"{info['cpu']} ({info['cores']} cores, {info['memory_gib']} GiB):\n"
        f"  full sync (Temporal)   {result['full_items_per_second']:>8,} items/s, "
        f"{result['full_insider_requests']} Insider requests\n"
        f"  full sync (bare loop)  {result['bare_items_per_second']:>8,} items/s\n"
        f"  ratio                  {result['ratio']:>8.2f}   (target >= {TARGET_RATIO})\n"
        f"  no-change delta        {result['no_change_seconds']:>8.2f} s = "
        f"{result['no_change_share_of_full']:.1%} of the full sync, "
        f"{result['no_change_items_sent']} items, {result['no_change_insider_requests']} "
        f"requests (target < {TARGET_NO_CHANGE_SHARE:.0%}, 0 items)\n"
        f"  reconciliation         {result['reconcile_seconds']:>8.1f} s re-reading every "
        f"product, {result['reconcile_items_sent']} items, "
        f"{result['reconcile_insider_requests']} requests\n"
        f"  worker peak RSS        {result['worker_peak_rss_mb']:>8.0f} MB (target < {TARGET_RSS_MB})"
    )
    print(f"  saved to {save('catalog', result)}")
    ok = (
        result["ratio"] >= TARGET_RATIO
        and result["no_change_share_of_full"] < TARGET_NO_CHANGE_SHARE
        and result["no_change_items_sent"] == 0
        and result["reconcile_items_sent"] == 0
        and result["worker_peak_rss_mb"] < TARGET_RSS_MB
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
