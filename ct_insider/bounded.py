"""Run coroutines a few at a time, taking their outcomes as they finish, and leave nothing
running behind: settling a doubt reads many profiles concurrently, and an attempt that
gives up (an error, a cancellation) must not leave reads or re-sends going on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")


@asynccontextmanager
async def bounded(
    limit: int, work: list[Coroutine[Any, Any, T]]
) -> AsyncIterator[list[Awaitable[T]]]:
    """`work` run at most `limit` at a time; yields awaitables in the order they finish.
    Leaving the block cancels and awaits whatever is still running."""
    gate = asyncio.Semaphore(limit)

    async def gated(coroutine: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await coroutine

    tasks = [asyncio.ensure_future(gated(c)) for c in work]
    try:
        yield list(asyncio.as_completed(tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
