"""The bridge's group commit of catalog changes: one signal per workflow per window, bounded,
every delivery answered with its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from bridge.catalog_commit import MAX_CHANGES_PER_SIGNAL, CatalogCommitter
from workflows.catalog_changes import CatalogChange


def changes(prefix: str, count: int) -> list[CatalogChange]:
    return [
        CatalogChange(dedupe_key=f"{prefix}-{n}", product_id=f"{prefix}-{n}") for n in range(count)
    ]


class Signals:
    def __init__(self, fail: bool = False) -> None:
        self.stored: list[tuple[str, int]] = []
        self.fail = fail

    async def store(self, key: str, batch: list[CatalogChange]) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("Temporal unavailable")
        self.stored.append((key, len(batch)))


async def test_concurrent_deliveries_share_one_signal_per_workflow() -> None:
    signals = Signals()
    committer = CatalogCommitter(signals.store, window_seconds=0.05)
    # When 20 deliveries for two workflows arrive within one window
    await asyncio.gather(
        *(committer.commit(f"products-{n % 2}", changes(f"d{n}", 3)) for n in range(20))
    )
    # Then each workflow gets one signal with all 30 of its changes
    assert sorted(signals.stored) == [("products-0", 30), ("products-1", 30)]
    assert committer.signals == 2


async def test_a_window_holding_the_most_changes_a_signal_takes_is_sent_at_once() -> None:
    signals = Signals()
    # Given a window far longer than the test waits
    committer = CatalogCommitter(signals.store, window_seconds=3600)
    # When deliveries bring more than a signal may hold
    await asyncio.wait_for(
        asyncio.gather(
            committer.commit("products-0", changes("a", MAX_CHANGES_PER_SIGNAL - 1)),
            committer.commit("products-0", changes("b", 2)),
        ),
        timeout=60,  # a safety net only: without the bound this would wait an hour
    )
    # Then it went out when full, without waiting for the window
    assert signals.stored == [("products-0", MAX_CHANGES_PER_SIGNAL + 1)]


async def test_a_failed_signal_fails_every_delivery_in_its_window() -> None:
    # Given Temporal refusing the signal
    committer = CatalogCommitter(Signals(fail=True).store, window_seconds=0.01)
    # When two deliveries share a window
    outcomes = await asyncio.gather(
        committer.commit("products-0", changes("a", 1)),
        committer.commit("products-0", changes("b", 1)),
        return_exceptions=True,
    )
    # Then both learn it was not stored (the sender delivers again)
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
    with pytest.raises(RuntimeError):
        await committer.commit("products-1", changes("c", 1))
