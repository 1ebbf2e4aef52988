"""Build and run the worker: one process holding the clients, all workflows and activities."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from activities.sync import SyncActivities
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import CommercetoolsSettings, InsiderSettings
from ct_insider.insider.client import InsiderClient
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.ledger import DeliveryLedger
from ct_insider.sync.orders import OrderEventSender
from ct_insider.sync.taxonomy import TaxonomyResolver
from workflows.backfill import BackfillWorkflow
from workflows.delta import DeltaSyncWorkflow

log = get_logger(__name__)

WORKFLOWS = [BackfillWorkflow, DeltaSyncWorkflow]


@asynccontextmanager
async def build_worker(
    client: Client,
    task_queue: str,
    ct_settings: CommercetoolsSettings,
    insider_settings: InsiderSettings,
    mapping: MappingConfig,
    max_concurrent_activities: int = 20,
) -> AsyncIterator[Worker]:
    async with CommercetoolsClient(ct_settings) as ct, InsiderClient(insider_settings) as insider:
        orders = OrderEventSender(ct, insider, DeliveryLedger(ct), TaxonomyResolver(ct), mapping)
        sync = SyncActivities(ct, insider, mapping, orders)
        yield Worker(
            client,
            task_queue=task_queue,
            workflows=WORKFLOWS,
            activities=[sync.count_records, sync.sync_chunk],
            max_concurrent_activities=max_concurrent_activities,
            graceful_shutdown_timeout=timedelta(seconds=20),
        )


async def run_worker(
    client: Client,
    task_queue: str,
    ct_settings: CommercetoolsSettings,
    insider_settings: InsiderSettings,
    mapping: MappingConfig,
    ready_file: Path | None = None,
) -> None:
    async with build_worker(client, task_queue, ct_settings, insider_settings, mapping) as worker:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker started", task_queue=task_queue, namespace=client.namespace)
        async with worker:
            if ready_file is not None:
                await asyncio.to_thread(ready_file.write_text, "ready")
            await stop.wait()
        log.info("worker stopped", task_queue=task_queue)
