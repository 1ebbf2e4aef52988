"""Hand signals to Temporal: journey signals through the shards' group commit, catalog
changes to the few catalog-change workflows (one signal-with-start per workflow named in a
delivery: workflows/catalog_changes.py), cart signals to a workflow per cart
(bridge/carts.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from bridge.carts import CartSignal, CartSignaller
from bridge.catalog_commit import CatalogCommitter
from bridge.commit import ShardCommitter, ShardPart, TemporalUnavailable
from workflows.catalog_changes import (
    CatalogChange,
    CatalogChangeInput,
    CatalogChangeWorkflow,
    catalog_change_workflow_id,
)

RPC_TIMEOUT = timedelta(seconds=5)

__all__ = ["Dispatcher", "TemporalUnavailable"]


# How long catalog changes of concurrent deliveries are gathered into one signal.
CATALOG_WINDOW_SECONDS = 0.1


class Dispatcher:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        journeys: ShardCommitter,
        catalog_window_seconds: float = CATALOG_WINDOW_SECONDS,
        carts: CartSignaller | None = None,
    ) -> None:
        """`carts`: with cart events on (CART_EVENTS_ENABLED)."""
        self._client = client
        self._task_queue = task_queue
        self.journeys = journeys
        self.catalog = CatalogCommitter(self._catalog_change, catalog_window_seconds)
        self.carts = carts

    async def dispatch(self, signals: Sequence[ShardPart | CatalogChange | CartSignal]) -> int:
        """Return once Temporal stored them all (journey signals as the bridge admitted
        them: bridge/admission.py), with how many workflows were signalled."""
        journey_parts: list[ShardPart] = []
        by_product: dict[str, list[CatalogChange]] = defaultdict(list)
        cart_signals: list[CartSignal] = []
        for signal in signals:
            if isinstance(signal, CartSignal):
                cart_signals.append(signal)
            elif isinstance(signal, CatalogChange):
                by_product[signal.workflow_key()].append(signal)
            else:
                journey_parts.append(signal)
        try:
            shards, carts, *_ = await asyncio.gather(
                self.journeys.commit_parts(journey_parts) if journey_parts else _none(),
                self._carts(cart_signals),
                *(self.catalog.commit(key, batch) for key, batch in by_product.items()),
            )
        except (RPCError, RuntimeError) as exc:
            raise TemporalUnavailable(str(exc)) from exc
        return int(shards or 0) + int(carts or 0) + len(by_product)

    async def _carts(self, signals: list[CartSignal]) -> int:
        if not signals or self.carts is None:
            return 0
        return await self.carts.send(signals)

    async def _catalog_change(self, key: str, changes: list[CatalogChange]) -> None:
        await self._client.start_workflow(
            CatalogChangeWorkflow.run,
            CatalogChangeInput(key=key),
            id=catalog_change_workflow_id(self._task_queue, key),
            task_queue=self._task_queue,
            start_signal="changed",
            start_signal_args=[changes],
            rpc_timeout=RPC_TIMEOUT,
        )

    async def ready(self) -> bool:
        try:
            return await self._client.service_client.check_health(timeout=RPC_TIMEOUT)
        except (RPCError, RuntimeError):
            return False


async def _none() -> int:
    return 0
