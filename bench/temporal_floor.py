"""The floor under bench/realtime.py: what Temporal alone costs for the same traffic.

    .venv/bin/python -m bench.temporal_floor [--shape single|batched|orders]

The shape of the connector's realtime path - the bridge's group commit (the real
`ShardCommitter`, same window, same shards) signalling shard workflows that take what is
pending and run one local activity per batch, on a worker configured like the journey
worker, continuing-as-new like the shards - with a workflow that does nothing else and an
activity that only notes when it ran: no HTTP, no mapping, no commercetools, no Insider.
Its cost per event on a machine is the least this design pays there; bench/realtime.py
runs it side by side with the connector.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
from temporalio.common import RawValue
from temporalio.service import RPCError

from bench.harness import CpuSeconds, delivery_figures, machine, save
from bench.loadgen import at_times
from bench.traffic import SHAPES, Shape, population, workload
from bridge.commit import ShardCommitter, TemporalUnavailable
from bridge.routing import storefront_signal
from ct_insider.codec_keys import generate_key_entry
from ct_insider.config import TemporalSettings
from ct_insider.journeys.signals import JourneySignal, window_payload
from ct_insider.journeys.storefront import StorefrontEvent
from ct_insider.temporal import connect as connect_temporal
from emulators.process import ManagedProcess, free_port, temporal_dev_server_command
from workers.main import journey_activation_pool, journey_worker

LOGS = Path(".dev/bench-logs/temporal-floor")
MAX_HISTORY_EVENTS = 5_000  # as ShardSettings


class FloorBatch(BaseModel):
    keys: list[str]


class FloorShardInput(BaseModel):
    shard: int  # what the connector's ShardInput.shard is


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
class FloorShardWorkflow:
    def __init__(self) -> None:
        self._pending: list[str] = []

    @workflow.signal
    def deliver(self, signals: list[dict[str, Any]]) -> None:
        self._pending.extend(str(s["dedupe_key"]) for s in signals)

    @workflow.run
    async def run(self, params: FloorShardInput) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._pending))
            batch, self._pending = self._pending, []
            await workflow.execute_local_activity_method(
                FloorRecorder.record,
                FloorBatch(keys=batch),
                start_to_close_timeout=timedelta(seconds=30),
            )
            if workflow.info().get_current_history_length() >= MAX_HISTORY_EVENTS:
                await workflow.sleep(timedelta(milliseconds=1))
                workflow.continue_as_new(params)


class FloorCommitter(ShardCommitter):
    """The bridge's group commit, signalling the floor's shards instead (as the bridge hands
    over its windows but around a shard's continue-as-new)."""

    async def store(self, shard: int, parts: list[bytes], continuing: bool = False) -> None:
        payload = window_payload(parts)
        try:
            await self.client.start_workflow(
                FloorShardWorkflow.run,
                FloorShardInput(shard=shard),
                id=self.workflow_id(shard),
                task_queue=self.task_queue,
                start_signal="deliver",
                start_signal_args=[RawValue(payload)],
            )
        except (RPCError, RuntimeError) as exc:
            raise TemporalUnavailable(str(exc)) from exc
        self.commits += 1


async def serve_worker(address: str, task_queue: str, out: Path, ready: Path) -> None:
    """The floor's worker process, built as the journey worker is (workers/main.py)."""
    client = await connect(address)
    recorder = FloorRecorder(out)
    with journey_activation_pool() as activations:
        async with journey_worker(
            client, task_queue, [FloorShardWorkflow], [recorder.record], activations
        ):
            await asyncio.to_thread(ready.write_text, "ready")
            await asyncio.Event().wait()  # until the benchmark terminates the process


def signals_of(body: Any) -> list[JourneySignal]:
    """What the bridge makes of a storefront request (order messages: one signal each,
    keyed like the connector's purchases by order number)."""
    if "notificationType" in body:
        order = body["order"]
        return [
            JourneySignal(
                dedupe_key=str(order.get("orderNumber") or order["id"]),
                kind="order",
                type="OrderCreated",
                occurred_at=order["createdAt"],
                identity={
                    "customer_id": order.get("customerId"),
                    "email": order.get("customerEmail"),
                },
                resource_id=order["id"],
            )
        ]
    events = body.get("events", [body])
    return [storefront_signal(StorefrontEvent.model_validate(e)) for e in events]


async def run(shape: Shape, identities: int, shards: int) -> dict[str, Any]:
    await asyncio.to_thread(LOGS.mkdir, parents=True, exist_ok=True)
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
    skus = [f"SKU-{n:05d}" for n in range(150)]
    orders = [
        {
            "id": str(uuid.UUID(int=n + 1)),
            "version": 1,
            "orderNumber": f"FLOOR-{n}",
            "createdAt": "2026-12-01T00:00:00Z",
            "customerId": f"bench-customer-{n}",
            "lineItems": [{}],
        }
        for n in range(int(shape.events * shape.order_share) + 1)
    ]
    # The floor has no dedupe: a redelivering sender's copies are left out.
    requests = [
        request
        for request in workload(shape, population(identities, 0.1), skus, orders)
        if not request.redelivery
    ]
    batches = [signals_of(request.body) for request in requests]
    refused = 0
    with dev_server:
        client = await connect(f"127.0.0.1:{port}")
        committer = FloorCommitter(client, task_queue, shards=shards)
        with worker, CpuSeconds({"temporal": dev_server, "worker": worker}) as cpu:

            async def send(index: int) -> None:
                nonlocal refused
                requests[index].posted_at = time.time()
                try:
                    await committer.commit(batches[index])
                except TemporalUnavailable:  # counted, as the bridge's 503s are
                    refused += 1
                    return
                requests[index].accepted_at = time.time()

            seconds = await at_times([request.send_at for request in requests], send)
            expected = sum(len(b) for b, r in zip(batches, requests, strict=True) if r.accepted_at)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len(delivered(delivered_file)) >= expected:
                    break
                await asyncio.sleep(0.5)
    stored = delivered(delivered_file)
    keys = [
        (signal.dedupe_key, request.posted_at if request.accepted_at else None)
        for request, batch in zip(requests, batches, strict=True)
        for signal in batch
    ]
    return {
        "shape": shape.name,
        "events_posted": len(keys),
        "rate_offered": shape.rate,
        "refused": refused,
        # "benchmark client" (CPU) does the bridge's part: the group commit's signals.
        **delivery_figures(
            [accepted for _, accepted in keys], [stored.get(key) for key, _ in keys], seconds, cpu
        ),
        "lost": sum(1 for key, accepted in keys if accepted and key not in stored),
    }


async def connect(address: str) -> Client:
    """As the bridge and the worker connect (same data converter, same interceptors), once
    the dev server answers (payloads encrypted as in production)."""
    os.environ.setdefault("TEMPORAL_CODEC_KEYS", generate_key_entry("bench"))
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
        f"{result['latency_p95']} / {result['latency_p99']} s, lost {result['lost']}, "
        f"CPU ms per event {result['cpu_ms_per_event']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="single")
    parser.add_argument("--identities", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--serve-worker", nargs=4, metavar=("ADDRESS", "QUEUE", "OUT", "READY"))
    args = parser.parse_args()
    if args.serve_worker:
        address, queue, out, ready = args.serve_worker
        # asyncio's own loop, as `ct-insider worker` runs.
        asyncio.run(serve_worker(address, queue, Path(out), Path(ready)))
        return 0
    result = uvloop.run(run(SHAPES[args.shape], args.identities, args.shards))
    info = machine()
    print(
        f"\ntemporal floor, shape {args.shape}, on {info['cpu']} ({info['cores']} cores; speed "
        f"probe {info['speed_probe_seconds']} s):\n  {summary(result)}"
    )
    print(f"results: {save('temporal-floor', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
