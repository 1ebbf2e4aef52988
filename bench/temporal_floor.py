"""The floor under bench/realtime.py: what Temporal alone costs for the same traffic.

    .venv/bin/python -m bench.temporal_floor [--events N] [--rate R] [--customers C]

The shape of the connector's journeys - one workflow per customer, each event a
signal-with-start, the workflow takes the signals waiting and runs one local activity per
batch, on a worker configured like the journey worker - with a workflow that does nothing
else and an activity that only notes when it ran: no bridge, no mapping, no commercetools,
no Insider. Its cost per event on a machine is the least any per-customer workflow design
pays there; `bench/realtime.py` runs it side by side with the connector.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvloop
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.service import RPCError

from bench.harness import CpuSeconds, delivery_figures, machine, save
from bench.loadgen import at_rate
from ct_insider.config import TemporalSettings
from ct_insider.temporal import connect as connect_temporal
from emulators.process import ManagedProcess, free_port, temporal_dev_server_command
from workers.main import journey_activation_pool, journey_worker

LOGS = Path(".dev/bench-logs/temporal-floor")


class FloorBatch(BaseModel):
    keys: list[str]


class FloorJourneyInput(BaseModel):
    customer: int  # what the connector's JourneyInput.key is


class FloorRecorder:
    """Appends `<key> <unix time>` per delivered key to a file the benchmark reads back."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", buffering=1)

    @activity.defn(name="floor_record")
    async def record(self, batch: FloorBatch) -> int:
        now = time.time()
        self._file.write("".join(f"{key} {now}\n" for key in batch.keys))
        return len(batch.keys)


@workflow.defn
class FloorJourneyWorkflow:
    def __init__(self) -> None:
        self._pending: list[str] = []

    @workflow.signal
    def deliver(self, batch: FloorBatch) -> None:
        self._pending.extend(batch.keys)

    @workflow.run
    async def run(self, params: FloorJourneyInput) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._pending))
            batch, self._pending = self._pending, []
            await workflow.execute_local_activity_method(
                FloorRecorder.record,
                FloorBatch(keys=batch),
                start_to_close_timeout=timedelta(seconds=30),
            )


async def serve_worker(address: str, task_queue: str, out: Path, ready: Path) -> None:
    """The floor's worker process, built as the journey worker is (workers/main.py)."""
    client = await connect(address)
    recorder = FloorRecorder(out)
    with journey_activation_pool() as activations:
        async with journey_worker(
            client, task_queue, [FloorJourneyWorkflow], [recorder.record], activations
        ):
            await asyncio.to_thread(ready.write_text, "ready")
            await asyncio.Event().wait()  # until the benchmark terminates the process


def customer_of_each_event(count: int, customers: int) -> list[int]:
    """As in bench/realtime.py: events spread evenly over the customers, then shuffled."""
    owners = [n % customers for n in range(count)]
    random.Random(11).shuffle(owners)
    return owners


async def run(count: int, rate: float, customers: int) -> dict[str, Any]:
    port = free_port()
    dev_server = ManagedProcess(
        "temporal",
        temporal_dev_server_command(port, free_port(), headless=True),
        log_path=LOGS / "temporal.log",
    )
    task_queue = f"floor-{uuid.uuid4()}"
    delivered_file, ready = LOGS / "delivered.txt", LOGS / "worker.ready"
    delivered_file.unlink(missing_ok=True)
    worker = ManagedProcess(
        "worker",
        [
            sys.executable,
            "-m",
            "bench.temporal_floor",
            "--serve-worker",
            f"127.0.0.1:{port}",
            task_queue,
            str(delivered_file),
            str(ready),
        ],
        ready_file=ready,
        log_path=LOGS / "worker.log",
    )
    owners = customer_of_each_event(count, customers)
    accepted: dict[str, float] = {}
    refused = 0
    with dev_server:
        client = await connect(f"127.0.0.1:{port}")
        with worker, CpuSeconds({"temporal": dev_server, "worker": worker}) as cpu:

            async def send(index: int) -> None:
                nonlocal refused
                key = f"e{index}"
                try:
                    await client.start_workflow(
                        FloorJourneyWorkflow.run,
                        FloorJourneyInput(customer=owners[index]),
                        id=f"floor-journey-{owners[index]}",
                        task_queue=task_queue,
                        start_signal="deliver",
                        start_signal_args=[FloorBatch(keys=[key])],
                    )
                except (RPCError, RuntimeError):  # counted, as the bridge's 503s are
                    refused += 1
                    return
                accepted[key] = time.time()

            seconds = await at_rate(count, rate, send)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len(delivered(delivered_file)) >= len(accepted):
                    break
                await asyncio.sleep(0.5)
    stored = delivered(delivered_file)
    keys = [f"e{index}" for index in range(count)]
    return {
        "events_posted": count,
        "customers": customers,
        "rate_offered": rate,
        "refused": refused,
        # "benchmark client" (CPU) sends the signals-with-start: the bridge's Temporal share.
        **delivery_figures(
            [accepted.get(key) for key in keys], [stored.get(key) for key in keys], seconds, cpu
        ),
        "lost": sum(1 for key in accepted if key not in stored),
    }


async def connect(address: str) -> Client:
    """As the bridge and the worker connect (same data converter, same interceptors), once
    the dev server answers."""
    for _ in range(120):
        try:
            client = await connect_temporal(TemporalSettings(address=address))
            await client.service_client.check_health()
            return client
        except RuntimeError:
            await asyncio.sleep(0.5)
    raise RuntimeError(f"no Temporal server at {address}")


def delivered(path: Path) -> dict[str, float]:
    """First delivery time of each key (a key noted twice would be a duplicate delivery)."""
    first: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, at = line.partition(" ")
            first.setdefault(key, float(at))
    return first


def summary(result: dict[str, Any]) -> str:
    return (
        f"accepted {result['accepted_per_second']}/s, delivered "
        f"{result['delivered_per_second']}/s, p50/p95/p99 {result['latency_p50']} / "
        f"{result['latency_p95']} / {result['latency_p99']} s (p99 by tenth of run "
        f"{result['latency_p99_by_tenth_of_run']}), lost {result['lost']}, "
        f"CPU ms per event {result['cpu_ms_per_event']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--serve-worker", nargs=4, metavar=("ADDRESS", "QUEUE", "OUT", "READY"))
    args = parser.parse_args()
    if args.serve_worker:
        address, queue, out, ready = args.serve_worker
        # asyncio's own loop, as `ct-insider worker` runs.
        asyncio.run(serve_worker(address, queue, Path(out), Path(ready)))
        return 0
    LOGS.mkdir(parents=True, exist_ok=True)
    result = uvloop.run(run(args.events, args.rate, args.customers))
    info = machine()
    print(
        f"\ntemporal floor: {args.events:,} events for {args.customers:,} customers at "
        f"{args.rate:.0f}/s offered, on {info['cpu']} ({info['cores']} cores; speed probe "
        f"{info['speed_probe_seconds']} s):\n  {summary(result)}"
    )
    print(f"results: {save('temporal-floor', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
