"""The bridge routes by the layout it read lately, or by nothing (503): never by a layout
it could not confirm within the staleness bound."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bridge.layout import LayoutReader
from ct_insider.journeys.layout import LAYOUT_MEMO, Layout, LayoutStatus

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
