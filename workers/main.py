"""Build and run the worker process: the clients, and two Temporal workers sharing them.

- the sync queue (`TEMPORAL_TASK_QUEUE`): backfills and delta syncs
- the journey queue (`TEMPORAL_JOURNEY_TASK_QUEUE`): the journey shards fed by the bridge
  (and per-product catalog changes, and per-cart workflows: cart events and reminders), kept
  apart so a large backfill never delays realtime delivery
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner, Worker

from activities.cart import CartActivities
from activities.catalog import CatalogActivities
from activities.check import CheckActivities
from activities.erasure import ErasureActivities, ErasureStarter
from activities.journey import JourneyActivities
from activities.layout import announce_layout
from activities.log_context import LogContextInterceptor
from activities.redrive import RedriveActivities
from activities.replenishment import ReplenishmentActivities, TemporalReplenishmentTimers
from activities.sync import SyncActivities
from activities.watermarks import WatermarkActivities
from bridge.commit import ShardCommitter
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import (
    CartSettings,
    CommercetoolsSettings,
    InsiderSettings,
    ReplenishmentSettings,
    ShardBacklogSettings,
    TimerCapSettings,
    load,
)
from ct_insider.deadletters import DeadLetterStore
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.coalescer import UpsertCoalescer
from ct_insider.journeys.archive import ArchiveStore, DedupeArchive
from ct_insider.journeys.delivery import JourneyDeliverer
from ct_insider.journeys.settle import DoubtSettler
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.replenishment.planner import ReplenishmentPlanner
from ct_insider.replenishment.reminders import ReminderSender
from ct_insider.replenishment.service import Replenishment
from ct_insider.search_attributes import (
    SearchAttributeConflict,
    SearchAttributesRefused,
    ensure_search_attributes,
)
from ct_insider.setup.matching import MatchingStore, SettleMatching
from ct_insider.sync.catalog import CatalogSender
from ct_insider.sync.fingerprints import FingerprintStore
from ct_insider.sync.ledger import DeliveryLedger
from ct_insider.sync.orders import OrderEventSender
from ct_insider.sync.taxonomy import TaxonomyResolver
from ct_insider.sync.watermarks import WatermarkStore
from ct_insider.timers.cap import OpenTimerCap
from ct_insider.timers.kinds import TimerAdmission
from workflows.backfill import BackfillWorkflow
from workflows.cart import CartWorkflow
from workflows.catalog_changes import CatalogChangeWorkflow
from workflows.check import ConsistencyCheckWorkflow
from workflows.delta import DeltaSyncWorkflow
from workflows.erasure import ErasureWorkflow
from workflows.journey_layout import JourneyLayoutWorkflow
from workflows.journey_shard import JourneyShardWorkflow
from workflows.redrive import RedriveWorkflow
from workflows.replenishment import ReplenishmentWorkflow

log = get_logger(__name__)

SYNC_WORKFLOWS = [
    BackfillWorkflow,
    DeltaSyncWorkflow,
    RedriveWorkflow,
    ConsistencyCheckWorkflow,
    ErasureWorkflow,
]
# Replenishment timers run with the realtime path: a reminder is due at its moment, not
# after a backfill's chunks.
JOURNEY_WORKFLOWS = [
    JourneyShardWorkflow,
    JourneyLayoutWorkflow,
    CatalogChangeWorkflow,
    CartWorkflow,
    ReplenishmentWorkflow,
]
# Shards stay cached; catalog-change, cart and replenishment workflows (mostly asleep: a
# wake-up of an evicted one replays its short history) fill the rest.
JOURNEY_CACHE_SIZE = 1_000
# How long one activation of a journey-worker workflow may run before the SDK calls it a
# deadlock (see tolerate_slow_activations): beyond the workflow task timeouts (10 s, journey
# shards 20 s), so a slow activation is never a deadlock, and one slower than its task's
# timeout is retried as any.
ACTIVATION_DEADLOCK_SECONDS = 30


@dataclass(frozen=True)
class Workers:
    sync: Worker
    journeys: Worker

    @property
    def task_queue(self) -> str:
        return self.sync.task_queue

    @property
    def journey_task_queue(self) -> str:
        return self.journeys.task_queue

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Workers]:
        async with self.sync, self.journeys:
            yield self


def journey_activation_pool() -> ThreadPoolExecutor:
    """Shard activations are short CPU bursts: a few threads run them with less GIL
    hand-over than the SDK's default pool of up to 500 (bench/realtime.py)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="journey_activation_")


def journey_worker(
    client: Client,
    task_queue: str,
    workflows: Sequence[type],
    activities: Sequence[Callable[..., Any]],
    activations: ThreadPoolExecutor,
    cache_size: int = JOURNEY_CACHE_SIZE,
) -> Worker:
    """A worker tuned for the realtime path: short workflow tasks with local activities
    (also used by bench/temporal_floor.py, so its floor is measured with the same
    settings)."""
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=workflows,
        activities=activities,
        max_concurrent_activities=100,
        # A workflow's first task arrives on the normal queue, every later one on this
        # worker's sticky queue. Half the polls for each: a sticky poll always waits, so
        # a signal's task is handed over at once instead of being stored and read back
        # (bench/realtime.py: with most polls on the normal queue, sticky tasks waited
        # 0.8 s each at 100 events/s).
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(32),
        nonsticky_to_sticky_poll_ratio=0.5,
        max_cached_workflows=cache_size,
        # Reviewed-deterministic workflows; the sandbox's per-workflow and per-activation
        # cost showed in the realtime CPU profile (see bench/realtime.py).
        workflow_runner=UnsandboxedWorkflowRunner(),
        workflow_task_executor=activations,
        graceful_shutdown_timeout=timedelta(seconds=20),
        interceptors=[LogContextInterceptor()],
    )
    tolerate_slow_activations(worker)
    return worker


def tolerate_slow_activations(worker: Worker) -> None:
    """Let an activation take up to ACTIVATION_DEADLOCK_SECONDS before the SDK calls it a
    deadlock (its own limit is 2 s of wall time, counted from when the activation is queued
    for one of the pool's few threads).

    On a busy machine a shard's activation - a few thousand signals taken in, or a carry
    built - waits behind the others and passes 2 s without blocking on anything; the SDK
    then fails the task, evicts the shard, and the retry replays the whole run before
    taking in still more signals: measured under load (bench/realtime.py, skew shape, load
    average 5), every shard stopped for good this way after 20-60 s. No workflow of this
    worker blocks (no I/O, reviewed), so a slow activation is only slow; a real hang still
    shows as a workflow task that times out.

    The SDK has no setting for it (only `debug_mode`, which also runs activations on the
    event loop's thread): this sets its private attribute, and fails loudly if a new SDK
    version no longer has it (tests/integration/test_slow_activation.py)."""
    workflows = getattr(worker, "_workflow_worker", None)
    if workflows is None or not hasattr(workflows, "_deadlock_timeout_seconds"):
        raise RuntimeError(
            "temporalio no longer has Worker._workflow_worker._deadlock_timeout_seconds: "
            "find the SDK's way to allow slow activations (workers/main.py)"
        )
    workflows._deadlock_timeout_seconds = ACTIVATION_DEADLOCK_SECONDS


@asynccontextmanager
async def build_workers(
    client: Client,
    task_queue: str,
    journey_task_queue: str,
    ct_settings: CommercetoolsSettings,
    insider_settings: InsiderSettings,
    mapping: MappingConfig,
    *,
    journey_shards: int = 4,
    carts: CartSettings | None = None,
    replenishment_settings: ReplenishmentSettings | None = None,
    admission: TimerAdmission | None = None,
) -> AsyncIterator[Workers]:
    """`journey_shards`: TEMPORAL_JOURNEY_SHARDS (cart events go to the journey shards as
    the bridge routes); `carts`: CartSettings (cart URL of reminders);
    `replenishment_settings`: from the environment when not given; `admission`: the cap on
    new timer workflows (TIMERS_MAX_*, counted in Temporal's visibility, when not given)."""
    refill = replenishment_settings or load(ReplenishmentSettings)
    async with AsyncExitStack() as stack:
        ct = await stack.enter_async_context(CommercetoolsClient(ct_settings))
        insider = await stack.enter_async_context(InsiderClient(insider_settings))
        taxonomy = TaxonomyResolver(ct)
        replenishment = None
        if refill.enabled:
            replenishment = Replenishment(
                ReplenishmentPlanner(ct, refill, mapping.orders.purchase_time),
                TemporalReplenishmentTimers(
                    client,
                    journey_task_queue,
                    admission or OpenTimerCap.for_client(client, load(TimerCapSettings)),
                    day_seconds=refill.day_seconds,
                    max_skus=refill.max_skus_per_customer,
                    send_timeout_seconds=refill.send_timeout_seconds,
                ),
                refill,
            )
        orders = OrderEventSender(ct, insider, DeliveryLedger(ct), taxonomy, mapping, replenishment)
        catalog = CatalogSender(ct, insider, taxonomy, mapping.catalog, FingerprintStore(ct))
        sync = SyncActivities(ct, insider, mapping, orders, catalog)
        watermarks = WatermarkActivities(WatermarkStore(ct))
        catalog_changes = CatalogActivities(ct, insider, mapping, orders, catalog)
        checks = CheckActivities(ct, insider, mapping, orders, catalog)
        redrive = RedriveActivities(ct, insider, mapping, orders, catalog)
        erasure = ErasureActivities(ct, insider, mapping, orders, catalog)
        coalescer = UpsertCoalescer(
            insider, linger_seconds=insider_settings.upsert_linger_ms / 1000
        )
        stack.push_async_callback(coalescer.aclose)
        letters = DeadLetterStore(ct)
        deliverer = JourneyDeliverer(
            ct, insider, coalescer, orders, letters, mapping, erasures=ErasureStarter(task_queue)
        )
        matching = SettleMatching(
            insider_settings.settle_matching, insider_settings.partner_name, MatchingStore(ct)
        )
        journeys = JourneyActivities(
            deliverer,
            DoubtSettler(insider, deliverer, matching),
            DedupeArchive(ArchiveStore(ct)),
        )
        cart_events = CartActivities(
            ct,
            mapping,
            # Cart events join the journey shards' windows, batched across carts.
            ShardCommitter(
                client,
                journey_task_queue,
                shards=journey_shards,
                window_seconds=0.05,
                backlog_bytes=load(ShardBacklogSettings).shard_backlog_bytes,
                gauges=False,
            ),
            letters,
            url_template=carts.url_template if carts else None,
        )
        # Registered even while replenishment is off: timers armed before still fire.
        reminders = ReplenishmentActivities(
            ReminderSender(insider, coalescer, matching, letters, refill.event_name)
        )
        activations = journey_activation_pool()
        stack.callback(activations.shutdown)
        yield Workers(
            sync=Worker(
                client,
                task_queue=task_queue,
                workflows=SYNC_WORKFLOWS,
                activities=[
                    sync.count_records,
                    sync.sync_chunk,
                    checks.sample_check_records,
                    checks.check_records,
                    redrive.redrive_letters,
                    erasure.erase_person,
                    watermarks.load_watermark,
                    watermarks.save_watermark,
                    watermarks.advance_watermark,
                ],
                max_concurrent_activities=20,
                graceful_shutdown_timeout=timedelta(seconds=20),
                interceptors=[LogContextInterceptor()],
            ),
            journeys=journey_worker(
                client,
                journey_task_queue,
                JOURNEY_WORKFLOWS,
                [
                    journeys.deliver_journeys,
                    journeys.settle_journeys,
                    journeys.finish_journeys,
                    announce_layout,
                    journeys.archive_journeys,
                    catalog_changes.refresh_catalog,
                    cart_events.read_cart,
                    cart_events.remind_cart,
                    cart_events.hand_off_cart_events,
                    reminders.send_reminders,
                ],
                activations,
            ),
        )


async def register_search_attributes(client: Client) -> list[str]:
    """Register the search attributes our workflows set, where the server lets us (a dev
    server, a self-hosted cluster): without them every workflow task fails and is retried
    forever. Where it refuses (Temporal Cloud) or they clash, an error says what to run; the
    worker runs on (the commands and `ct-insider doctor` refuse with the same words)."""
    try:
        added = await ensure_search_attributes(client, client.namespace)
    except (SearchAttributesRefused, SearchAttributeConflict) as exc:
        log.error("workflows cannot run until this is fixed", reason=str(exc))
        return []
    except RPCError as exc:  # cannot even list them: nothing known either way
        log.warning(
            "search attributes not checked: Temporal refused to list them",
            reason=f"{exc.status.name if exc.status else 'error'}: {exc.message}",
            namespace=client.namespace,
        )
        return []
    if added:
        log.info("registered search attributes", added=added, namespace=client.namespace)
    return added


async def run_worker(
    client: Client,
    task_queue: str,
    journey_task_queue: str,
    ct_settings: CommercetoolsSettings,
    insider_settings: InsiderSettings,
    mapping: MappingConfig,
    ready_file: Path | None = None,
    *,
    journey_shards: int = 4,
    carts: CartSettings | None = None,
) -> None:
    async with build_workers(
        client,
        task_queue,
        journey_task_queue,
        ct_settings,
        insider_settings,
        mapping,
        journey_shards=journey_shards,
        carts=carts,
    ) as workers:
        await register_search_attributes(client)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "worker started",
            task_queue=task_queue,
            journey_task_queue=journey_task_queue,
            namespace=client.namespace,
        )
        async with workers.running():
            if ready_file is not None:
                await asyncio.to_thread(ready_file.write_text, "ready")
            await stop.wait()
        log.info("worker stopped", task_queue=task_queue)
