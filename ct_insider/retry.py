"""Jittered exponential backoff for transient HTTP failures, shared by both clients."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

T = TypeVar("T")

TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.PoolTimeout,
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
)
# Failures where the request certainly never reached the server: safe to repeat even
# when repeating a delivered request would duplicate its effect.
UNSENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


@dataclass(frozen=True)
class Backoff:
    attempts: int = 4
    base_seconds: float = 0.2
    max_seconds: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter delay for the given (0-based) attempt; a server hint wins when larger."""
        ceiling = min(self.max_seconds, self.base_seconds * (2**attempt))
        jittered = random.uniform(ceiling / 2, ceiling)
        return max(jittered, retry_after or 0.0)


class RetryableStatus(Exception):
    """An HTTP answer worth retrying (e.g. 503, 429); carries an optional Retry-After."""

    def __init__(self, response: httpx.Response, retry_after: float | None) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.retry_after = retry_after


def parse_retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


async def with_backoff(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    transient: tuple[type[BaseException], ...] = TRANSIENT_EXCEPTIONS,
) -> T:
    """Run `call`, retrying transient transport errors and RetryableStatus with backoff.

    After the last attempt the final exception propagates, so the caller (usually a
    Temporal activity) can decide whether a longer, durable retry is due.
    """
    for attempt in range(backoff.attempts):
        try:
            return await call()
        except RetryableStatus as exc:
            # A server asking for a longer pause than we wait in-process gets it durably:
            # the caller (an activity) fails and Temporal schedules the retry after it.
            too_long = exc.retry_after is not None and exc.retry_after > backoff.max_seconds
            if attempt == backoff.attempts - 1 or too_long:
                raise
            await asyncio.sleep(backoff.delay(attempt, exc.retry_after))
        except transient:
            if attempt == backoff.attempts - 1:
                raise
            await asyncio.sleep(backoff.delay(attempt))
    raise AssertionError("unreachable: the loop returns or raises")
