"""Hand signals to Temporal: journey signals through the shards' group commit, catalog
changes to the few catalog-change workflows (one signal-with-start per workflow named in a
delivery: workflows/catalog_changes.py), cart signals to a workflow per cart
(bridge/carts.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from temporalio.client import Client
from temporalio.service import RPCError

from bridge.carts import CartSignal, CartSignaller
from bridge.catalog_commit import CatalogCommitter
from bridge.commit import ShardCommitter, ShardPart, TemporalUnavailable
from bridge.history import RPC_TIMEOUT, HistoryWatch
from workflows.catalog_changes import (
    MAX_HISTORY_BYTES,
    CatalogChange,
    CatalogChangeInput,
    CatalogChangeWorkflow,
    catalog_change_workflow_id,
)

__all__ = ["CatalogBacklogged", "Dispatcher", "TemporalUnavailable"]


# How long catalog changes of concurrent deliveries are gathered into one signal.
CATALOG_WINDOW_SECONDS = 0.1
# A catalog-change workflow with more history than this is behind (a price import of more
# changes than it refreshes meanwhile: it continues-as-new only once what is pending fits its
# carry): its changes are answered 503 until it caught up, far from Temporal's 50 MB.
CATALOG_BACKLOG_BYTES = 2 * MAX_HISTORY_BYTES


class CatalogBacklogged(TemporalUnavailable):
    """The catalog-change workflow is far behind; the sender must deliver again later."""


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
        self._catalog_histories = HistoryWatch(client)
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
        for key in by_product:  # refused before anything of the delivery is stored
            self._refuse_if_catalog_behind(key)
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

    def _refuse_if_catalog_behind(self, key: str) -> None:
        workflow_id = catalog_change_workflow_id(self._task_queue, key)
        size = self._catalog_histories.history_bytes(workflow_id)
        if size > CATALOG_BACKLOG_BYTES:
            raise CatalogBacklogged(
                f"catalog-change workflow {workflow_id} is behind ({size:,} bytes of history)"
            )

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
