"""A window whose store ends in anything but success answers its requests (503), never
leaves them waiting: the lane that stores it may die with it."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from temporalio.client import Client

from bridge.commit import ShardCommitter, TemporalUnavailable
from bridge.layout import LayoutReader
from ct_insider.journeys.layout import Layout, LayoutStatus
from tests.unit.test_bridge_layout import KnownLayout, _view


class CancelledStore(ShardCommitter):
    """Its store is cancelled from inside, as a client library may raise it."""

    def __init__(self, layout: LayoutReader) -> None:
        super().__init__(
            cast(Client, cast(Any, None)), "shop-journeys", shards=1, layout=layout, gauges=False
        )
        self.window_seconds = 0
        self.stores = 0

    async def store(self, shard: int, parts: list[bytes], continuing: bool = False) -> None:
        self.stores += 1
        raise asyncio.CancelledError


async def test_a_store_cancelled_from_inside_answers_its_requests_503() -> None:
    # Given a committer whose store of a window is cancelled by what it calls
    committer = CancelledStore(KnownLayout(LayoutStatus(current=Layout(shards=1))))
    committer._lane(0).checked_at = float("inf")  # (no backlog check: no Temporal here)
    # When a request's events are committed
    commit = asyncio.create_task(committer.commit([_view("v-1")]))
    # Then it is answered (as unavailable: the sender posts again), not left waiting
    with pytest.raises(TemporalUnavailable):
        await asyncio.wait_for(commit, 10)
    # And the lane goes on: the next request's window is stored (and answered) too
    with pytest.raises(TemporalUnavailable):
        await asyncio.wait_for(committer.commit([_view("v-2")]), 10)
    assert committer.stores == 2
