"""Replenishment timers at scale: N customers with one open timer each, in one worker.

Starts a dev server, an in-process worker holding ReplenishmentWorkflow (its send activity
answers at once: Insider is not what is measured) with a workflow cache of N, and opens N
customers' timers through the real port (signal-with-start), then a later purchase for each
(a signal). Reports the worker's RSS growth per cached open timer, history events and
Temporal Actions per customer, and the rate. Not part of `make bench`:

    .venv/bin/python -m bench.replenishment [--customers 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
import uuid
from datetime import UTC, datetime

import psutil
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.replenishment import TemporalReplenishmentTimers
from ct_insider.codec_keys import generate_key_entry
from ct_insider.insider.models import Identifiers
from ct_insider.replenishment.contract import SEND_ACTIVITY, SendReminders
from ct_insider.replenishment.model import ArmTimer, TimerChanges
from ct_insider.replenishment.reminders import ReminderOutcome
from ct_insider.search_attributes import ALL as SEARCH_ATTRIBUTES
from ct_insider.timers.kinds import TIMERS_QUERY, ArmedTimer, TimerKind, workflow_id
from emulators.process import free_port, temporal_binary
from workflows.replenishment import ReplenishmentWorkflow

PERIOD_DAYS = 30.0  # no timer fires during the run


class Admit:
    async def admits_new(self, kind: TimerKind) -> bool:
        return True


@activity.defn(name=SEND_ACTIVITY)
async def send(params: SendReminders) -> ReminderOutcome:
    return ReminderOutcome(sent=[t.purchase.sku for t in params.timers])


def purchase(customer: str, sku: str, order: str) -> TimerChanges:
    change = ArmTimer(
        customer_key=customer,
        identifiers=Identifiers(uuid=customer, email=f"{customer}@example.com"),
        sku=sku,
        order_id=order,
        line_id=f"{order}-line",
        name="Coffee beans, dark roast 1 kg",
        quantity=2,
        purchased_at=datetime.now(UTC),
        period_days=PERIOD_DAYS,
        period_source="attribute",
    )
    return TimerChanges(customer_key=customer, changes=[change])


def rss_mb() -> float:
    gc.collect()
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


async def run(customers: int) -> dict[str, object]:
    os.environ.setdefault("TEMPORAL_CODEC_KEYS", generate_key_entry("bench"))
    from ct_insider.config import PayloadCodecSettings, load
    from ct_insider.temporal import data_converter

    env = await WorkflowEnvironment.start_local(
        port=free_port(),
        data_converter=data_converter(load(PayloadCodecSettings)),
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
    )
    try:
        client, queue = env.client, f"bench-replenish-{uuid.uuid4()}"
        port = TemporalReplenishmentTimers(
            client, queue, Admit(), day_seconds=86_400.0, max_skus=200
        )
        keys = [f"c-{n:07d}" for n in range(customers)]
        async with Worker(
            client,
            task_queue=queue,
            workflows=[ReplenishmentWorkflow],
            activities=[send],
            max_cached_workflows=customers,
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            # One customer first, so the baseline holds the SDK's own warm-up.
            await port.apply([purchase("warm-up", "SKU-0", "o-0")])
            await asyncio.sleep(1)
            before = rss_mb()
            started = time.monotonic()
            for at in range(0, customers, 100):
                await port.apply([purchase(k, "SKU-A", f"{k}-1") for k in keys[at : at + 100]])
            opened = time.monotonic() - started
            for at in range(0, customers, 100):
                await port.apply([purchase(k, "SKU-B", f"{k}-2") for k in keys[at : at + 100]])
            # Every workflow has run its tasks (and sits in the cache) once it answers.
            last = client.get_workflow_handle(workflow_id("replenishment", keys[-1]))
            for _ in range(3_000):
                if len(await last.query(TIMERS_QUERY, result_type=list[ArmedTimer])) == 2:
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)
            after = rss_mb()
            sample = client.get_workflow_handle(workflow_id("replenishment", keys[0]))
            events = len((await sample.fetch_history()).events)
        return {
            "customers": customers,
            "open_timers": customers * 2,
            "starts_per_s": round(customers / opened, 1),
            "worker_rss_growth_mb": round(after - before, 1),
            "kb_per_cached_customer": round((after - before) * 1024 / customers, 1),
            "history_events_per_customer_2_purchases": events,
            "actions_per_customer_2_purchases": 1 + 1 + 1,  # signal-with-start, signal, timer
            "signal_with_starts": port.starts,
            "signals": port.signals,
        }
    finally:
        await env.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.customers)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
