"""The journey layout as the bridge routes by it: read from JourneyLayoutWorkflow's memo
(describing a workflow needs no worker), else `TEMPORAL_JOURNEY_SHARDS`.

Read every `LAYOUT_REFRESH_SECONDS`, in the background; a bridge that could not read it for
`LAYOUT_STALE_SECONDS` does not know whether a reshard takes effect, so it routes nothing
(the committer answers 503) rather than route by a stale layout.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.journeys.layout import (
    LAYOUT_MEMO,
    LAYOUT_REFRESH_SECONDS,
    LAYOUT_STALE_SECONDS,
    Layout,
    LayoutStatus,
    layout_workflow_id,
)
from ct_insider.logging import get_logger

log = get_logger(__name__)

RPC_TIMEOUT = timedelta(seconds=5)


async def read_layout(client: Client, task_queue: str, configured: int) -> LayoutStatus:
    """The layout of the journey shards of `task_queue`; raises RPCError or RuntimeError
    when Temporal could not be asked."""
    handle = client.get_workflow_handle(layout_workflow_id(task_queue))
    try:
        # (the client retries an unreachable server beyond the RPC's own timeout)
        described = await asyncio.wait_for(
            handle.describe(rpc_timeout=RPC_TIMEOUT), RPC_TIMEOUT.total_seconds()
        )
    except TimeoutError:
        raise RPCError(
            "reading the journey layout timed out", RPCStatusCode.DEADLINE_EXCEEDED, b""
        ) from None
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return LayoutStatus(current=Layout(shards=configured))
    memo = await described.memo_value(LAYOUT_MEMO, None)
    if memo is None:  # (started without one: not by ct-insider)
        return LayoutStatus(current=Layout(shards=configured))
    return LayoutStatus.model_validate(memo)


class LayoutReader:
    def __init__(
        self,
        client: Client,
        task_queue: str,
        configured: int,
        *,
        refresh_seconds: float = LAYOUT_REFRESH_SECONDS,
        stale_seconds: float = LAYOUT_STALE_SECONDS,
    ) -> None:
        self._client = client
        self._task_queue = task_queue
        self._configured = configured
        self._refresh = refresh_seconds
        self._stale = stale_seconds
        self.latest: LayoutStatus | None = None
        self._read_at = float("-inf")  # when the read that gave `latest` started
        self._reading: asyncio.Task[None] | None = None

    async def status(self) -> LayoutStatus | None:
        """The layout known from a read started less than the stale bound ago, else None."""
        if time.monotonic() - self._read_at >= self._refresh and (
            self._reading is None or self._reading.done()
        ):
            self._reading = asyncio.create_task(self._read())
        if time.monotonic() - self._read_at > self._stale and self._reading is not None:
            await asyncio.shield(self._reading)
        if time.monotonic() - self._read_at > self._stale:
            return None
        return self.latest

    async def _read(self) -> None:
        started = time.monotonic()
        try:
            status = await read_layout(self._client, self._task_queue, self._configured)
        except Exception as exc:  # unreachable, or a memo this version cannot read
            log.warning("journey layout not read", error=str(exc))
            return
        if status.current.shards != self._configured and (
            self.latest is None or self.latest.current != status.current
        ):
            log.warning(
                "TEMPORAL_JOURNEY_SHARDS differs from the journey layout: routing by the layout",
                configured=self._configured,
                layout_shards=status.current.shards,
                layout_epoch=status.current.epoch,
            )
        self.latest = status
        self._read_at = started
