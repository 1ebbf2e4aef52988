"""`ct-insider bridge`: serve the bridge with uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

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
    TemporalSettings,
    TimerCapSettings,
    load,
)
from ct_insider.deadletters import DeadLetterStore
from ct_insider.temporal import connect
from ct_insider.timers.cap import OpenTimerCap
from ct_insider.timers.kinds import TimerAdmission


async def serve(
    bridge: BridgeSettings,
    temporal: TemporalSettings,
    ct: CommercetoolsSettings,
    *,
    cart_timer_admission: TimerAdmission | None = None,
) -> None:
    """`cart_timer_admission`: the cap on open cart timers (CART_EVENTS_ENABLED); by default
    TIMERS_MAX_CART, counted in Temporal's visibility (ct_insider/timers/cap.py)."""
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
        await uvicorn.Server(config).serve()
