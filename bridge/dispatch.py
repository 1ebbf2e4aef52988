"""Hand signals to their journey workflows with signal-with-start."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError

from ct_insider.journeys.signals import JourneySignal
from workflows.catalog_changes import (
    CatalogChange,
    CatalogChangeInput,
    CatalogChangeWorkflow,
    catalog_change_workflow_id,
)
from workflows.journey import CustomerJourneyWorkflow, JourneyInput, journey_workflow_id

RPC_TIMEOUT = timedelta(seconds=5)


class TemporalUnavailable(Exception):
    """Temporal did not take the signal: the sender must deliver again later."""


class JourneyDispatcher:
    def __init__(self, client: Client, task_queue: str, template: JourneyInput | None = None):
        self._client = client
        self._task_queue = task_queue
        # Settings for journeys this bridge starts (the key is filled in per journey).
        self._template = template or JourneyInput(key="")

    async def dispatch(self, signals: Sequence[JourneySignal | CatalogChange]) -> int:
        """Signal (starting if needed) each journey or catalog-change workflow; returns once
        Temporal stored them all, with how many workflows were signalled."""
        by_journey: dict[str, list[JourneySignal]] = defaultdict(list)
        by_product: dict[str, list[CatalogChange]] = defaultdict(list)
        for signal in signals:
            if isinstance(signal, CatalogChange):
                by_product[signal.workflow_key()].append(signal)
                continue
            key = signal.identity.routing_key()
            if key is None:
                raise ValueError(f"signal {signal.dedupe_key} names no customer, visitor or email")
            by_journey[key].append(signal)
        try:
            await asyncio.gather(
                *(self._signal(key, batch) for key, batch in by_journey.items()),
                *(self._catalog_change(key, batch) for key, batch in by_product.items()),
            )
        except (RPCError, RuntimeError) as exc:
            raise TemporalUnavailable(str(exc)) from exc
        return len(by_journey) + len(by_product)

    async def _catalog_change(self, key: str, changes: list[CatalogChange]) -> None:
        await self._client.start_workflow(
            CatalogChangeWorkflow.run,
            CatalogChangeInput(key=key),
            id=catalog_change_workflow_id(key),
            task_queue=self._task_queue,
            start_signal="changed",
            start_signal_args=[changes],
            rpc_timeout=RPC_TIMEOUT,
        )

    async def _signal(self, key: str, signals: list[JourneySignal]) -> None:
        await self._client.start_workflow(
            CustomerJourneyWorkflow.run,
            self._template.model_copy(update={"key": key}),
            id=journey_workflow_id(key),
            task_queue=self._task_queue,
            start_signal="deliver",
            start_signal_args=[signals],
            # Answer 503 in seconds rather than hold the sender while Temporal is down.
            rpc_timeout=RPC_TIMEOUT,
        )

    async def ready(self) -> bool:
        try:
            return await self._client.service_client.check_health(timeout=RPC_TIMEOUT)
        except (RPCError, RuntimeError):
            return False
