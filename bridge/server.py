"""`ct-insider bridge`: serve the bridge with uvicorn until SIGINT/SIGTERM; `ct-insider
consume sqs`: the same, pulling an SQS queue into it too (bridge/sqs.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

import uvicorn
from temporalio.client import Client

from bridge.app import create_app
from bridge.carts import CartSignaller
from bridge.commit import ShardCommitter
from bridge.dispatch import Dispatcher
from bridge.routing import NotificationRouter
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import (
    BridgeSettings,
    CartSettings,
    CommercetoolsSettings,
    ShardBacklogSettings,
    SqsSettings,
    TemporalSettings,
    TimerCapSettings,
    load,
)
from ct_insider.deadletters import DeadLetterStore
from ct_insider.temporal import connect
from ct_insider.timers.cap import OpenTimerCap
from ct_insider.timers.kinds import TimerAdmission

if TYPE_CHECKING:
    from bridge.sqs import SqsConsumer


async def serve(
    bridge: BridgeSettings,
    temporal: TemporalSettings,
    ct: CommercetoolsSettings,
    *,
    cart_timer_admission: TimerAdmission | None = None,
    sqs: SqsSettings | None = None,
) -> None:
    """`cart_timer_admission`: the cap on open cart timers (CART_EVENTS_ENABLED); by default
    TIMERS_MAX_CART, counted in Temporal's visibility (ct_insider/timers/cap.py). `sqs`: a
    queue to consume beside the HTTP routes (its counters in /stats)."""
    # Lazy: the bridge starts (and answers 503) even while Temporal is still down.
    client: Client = await connect(temporal, lazy=True)
    carts = load(CartSettings)
    async with CommercetoolsClient(ct) as commercetools:
        app = create_app(
            bridge.token,
            NotificationRouter(commercetools, carts=carts.events_enabled),
            Dispatcher(
                client,
                temporal.journey_task_queue,
                ShardCommitter(
                    client,
                    temporal.journey_task_queue,
                    shards=temporal.journey_shards,
                    window_seconds=bridge.commit_window_ms / 1000,
                    backlog_bytes=load(ShardBacklogSettings).shard_backlog_bytes,
                ),
                carts=CartSignaller(
                    client,
                    temporal.journey_task_queue,
                    carts,
                    timer_admission=cart_timer_admission
                    or OpenTimerCap.for_client(client, load(TimerCapSettings)),
                )
                if carts.events_enabled
                else None,
            ),
            DeadLetterStore(commercetools),
        )
        config = uvicorn.Config(
            app,
            host=bridge.host,
            port=bridge.port,
            log_level="warning",
            access_log=False,
            log_config=None,  # uvicorn's lines go through ct_insider.logging
        )
        if sqs is None:
            await uvicorn.Server(config).serve()
            return
        from bridge.sqs import SqsConsumer, SqsQueue  # boto3: only a consumer imports it

        queue = SqsQueue(sqs)
        try:
            consumer = SqsConsumer(queue, app.state.deliveries, sqs)
            await ConsumingServer(config, consumer).serve_and_consume()
        finally:
            queue.close()


# How long a stopping consumer may finish the batch it is taking (bounded by the commit's
# RPC timeouts); what it has not deleted by then is received again.
CONSUMER_STOP_SECONDS = 10.0


class ConsumingServer(uvicorn.Server):
    """The bridge's routes, and a queue consumer beside them until SIGINT/SIGTERM (uvicorn
    handles them, then re-raises them once it is done: the consumer stops first, in
    shutdown) or until the consumer fails."""

    def __init__(self, config: uvicorn.Config, consumer: SqsConsumer) -> None:
        super().__init__(config)
        self._consumer = consumer
        self._consuming: asyncio.Task[None] | None = None

    async def serve_and_consume(self) -> None:
        self._consuming = asyncio.create_task(self._consumer.run())
        self._consuming.add_done_callback(self._consumer_done)
        await self.serve()
        await self._stop_consumer()
        if not self._consuming.cancelled():
            self._consuming.result()  # the consumer's failure, if it failed

    def _consumer_done(self, _task: asyncio.Task[None]) -> None:
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._stop_consumer()
        await super().shutdown(sockets)

    async def _stop_consumer(self) -> None:
        if self._consuming is None or self._consuming.done():
            return
        self._consumer.stop()
        stopped, _ = await asyncio.wait({self._consuming}, timeout=CONSUMER_STOP_SECONDS)
        if not stopped:
            self._consuming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consuming
