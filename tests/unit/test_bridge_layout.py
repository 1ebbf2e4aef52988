"""The bridge routes by the layout it read lately, or by nothing (503): never by a layout
it could not confirm within the staleness bound."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bridge.commit import ShardCommitter
from bridge.layout import LayoutReader
from ct_insider.journeys.layout import LAYOUT_MEMO, Layout, LayoutChange, LayoutStatus
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal, shard_of

RESHARDED = LayoutStatus(current=Layout(epoch=1, shards=8))


@dataclass
class Described:
    memo: dict[str, Any]

    async def memo_value(self, key: str, default: Any) -> Any:
        return self.memo.get(key, default)


@dataclass
class FakeTemporal:
    """Answers `describe` of the layout workflow as scripted: a memo, or an RPC status."""

    answers: list[dict[str, Any] | RPCStatusCode] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def get_workflow_handle(self, workflow_id: str) -> FakeTemporal:
        self.asked.append(workflow_id)
        return self

    async def describe(self, rpc_timeout: Any = None) -> Described:
        answer = self.answers.pop(0)
        if isinstance(answer, RPCStatusCode):
            raise RPCError("scripted", answer, b"")
        return Described(answer)


def reader(temporal: FakeTemporal, **bounds: float) -> LayoutReader:
    return LayoutReader(cast(Client, temporal), "shop-journeys", 4, **bounds)


async def test_without_a_layout_workflow_the_configured_count_is_the_layout() -> None:
    temporal = FakeTemporal([RPCStatusCode.NOT_FOUND])
    status = await reader(temporal).status()
    assert status == LayoutStatus(current=Layout(shards=4))
    assert temporal.asked == ["shop-journeys-layout"]


async def test_the_layout_workflow_memo_is_the_layout() -> None:
    temporal = FakeTemporal([{LAYOUT_MEMO: RESHARDED.model_dump(mode="json")}])
    status = await reader(temporal).status()
    assert status == RESHARDED
    assert status is not None
    assert status.in_effect(datetime.now(UTC)).shards == 8


async def test_a_bridge_that_never_read_the_layout_routes_nothing() -> None:
    # Given Temporal unreachable from the start, Then the bridge knows no layout (503)
    assert await reader(FakeTemporal([RPCStatusCode.UNAVAILABLE])).status() is None


async def test_a_layout_read_lately_is_kept_while_reads_fail_until_it_is_stale() -> None:
    # Given a layout read, then Temporal unreachable
    answers: list[dict[str, Any] | RPCStatusCode] = [
        {LAYOUT_MEMO: RESHARDED.model_dump(mode="json")},
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.UNAVAILABLE,
    ]
    fresh = reader(FakeTemporal(list(answers)), refresh_seconds=0, stale_seconds=3600)
    assert await fresh.status() == RESHARDED
    # Then within the staleness bound the bridge routes by what it read ...
    assert await fresh.status() == RESHARDED
    # ... and beyond it by nothing
    stale = reader(FakeTemporal(list(answers)), refresh_seconds=0, stale_seconds=0)
    await stale.status()
    assert await stale.status() is None


class RecordingCommitter(ShardCommitter):
    """Records the window each shard was handed instead of sending it to Temporal."""

    def __init__(self, layout: LayoutReader) -> None:
        # (its backlog checks find no shard workflow)
        temporal = FakeTemporal([RPCStatusCode.NOT_FOUND] * 8)
        super().__init__(cast(Client, temporal), "shop-journeys", shards=2, layout=layout)
        self.windows: list[tuple[int, list[str]]] = []

    async def store(self, shard: int, parts: list[bytes], continuing: bool = False) -> None:
        self.windows.append((shard, [json.loads(part)["dedupe_key"] for part in parts]))


class KnownLayout(LayoutReader):
    def __init__(self, status: LayoutStatus) -> None:
        super().__init__(cast(Client, None), "shop-journeys", 2)
        self.latest = status

    async def status(self) -> LayoutStatus | None:
        return self.latest


def _view(visitor: str) -> JourneySignal:
    return JourneySignal(
        dedupe_key=f"event:{visitor}",
        kind="storefront",
        type="product_view",
        occurred_at=datetime.now(UTC),
        identity=JourneyIdentity(anonymous_id=visitor),
    )


def _visitor(old: int, new: int) -> str:
    return next(
        f"v-{n}"
        for n in range(1_000)
        if shard_of(f"anonymous-v-{n}", 2) == old and shard_of(f"anonymous-v-{n}", 4) == new
    )


async def test_a_window_routed_before_a_reshard_is_stored_by_the_layout_in_effect() -> None:
    # Given two shards, and a reshard to four announced
    now = datetime.now(UTC)
    upcoming = LayoutStatus(
        current=Layout(shards=2),
        next=Layout(epoch=1, shards=4, effective_at=now + timedelta(hours=1)),
        change=LayoutChange(
            epoch=1, old_shards=2, new_shards=4, handoff_at=now + timedelta(hours=1)
        ),
    )
    layout = KnownLayout(upcoming)
    committer = RecordingCommitter(layout)
    # (a window no timer closes during the test: the test closes it once the layout moved,
    # where a 0.3 s window could close first on a loaded machine)
    committer.window_seconds = 3600
    moving, staying = _view(_visitor(1, 3)), _view(_visitor(1, 1))
    # When a window of shard 1 is routed by two shards ...
    commit = asyncio.create_task(committer.commit([moving, staying]))
    for _ in range(100):  # (the commit's task queues the window at its first step)
        if committer.open_timers()["commit_window"]:
            break
        await asyncio.sleep(0)
    assert committer.open_timers()["commit_window"] == 1
    # ... and the reshard takes effect before it is stored
    assert upcoming.next is not None
    layout.latest = upcoming.model_copy(
        update={"next": upcoming.next.model_copy(update={"effective_at": now})}
    )
    # (the window closes now, as when full; the moved signals' window at once)
    committer.window_seconds = 0
    committer._lane(1)._ready.set()
    assert await asyncio.wait_for(commit, 60) == 1
    # Then the moved identity's signal went to its new shard, the other one stayed
    assert sorted(committer.windows) == [(1, [staying.dedupe_key]), (3, [moving.dedupe_key])]
