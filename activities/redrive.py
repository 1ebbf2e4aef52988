"""Re-drive activity: send dead-lettered sync records again (ct_insider/sync/redrive.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from pydantic import BaseModel, Field
from temporalio import activity

from activities.base import ConnectorActivities
from activities.errors import as_application_error
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.insider.errors import InsiderError
from ct_insider.sync.redrive import RedriveResult, SyncRedriver

T = TypeVar("T")

# How often a re-drive attempt tells Temporal it is alive (the workflow's heartbeat
# timeout is a few of these): a dead worker's batch is retried within seconds.
HEARTBEAT_EVERY_SECONDS = 5.0


async def heartbeating(work: Awaitable[T], every: float = HEARTBEAT_EVERY_SECONDS) -> T:
    """`work`'s result, heartbeating every `every` seconds while it runs: the process is
    alive as long as heartbeats come (a letter's reads and sends have no progress of their
    own to report, and a profile read may wait on Insider's quota)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        task.cancel()  # (done: no effect) cancelled with the attempt


class RedriveBatch(BaseModel):
    keys: list[str] = Field(default_factory=list)


class RedriveActivities(ConnectorActivities):
    @activity.defn
    async def redrive_letters(self, params: RedriveBatch) -> RedriveResult:
        """Safe to retry: a letter already delivered is gone (reported missing), order
        events go through the delivery ledger, customers and catalog items are upserts."""
        redriver = SyncRedriver(
            self._ct,
            self._insider,
            self._mapping,
            self._orders,
            self._catalog,
        )
        try:
            return await heartbeating(
                redriver.redrive(params.keys, run=activity.info().workflow_id or "redrive")
            )
        except (CommercetoolsError, InsiderError) as exc:
            raise as_application_error(exc) from exc
