"""Pacing profile reads to Insider's profile quota: units per minute, per account.

Insider reports what each read cost (`"quota": {"cost": 2.5, ...}` when asked with
`"quota": true`); the cost of a read is not known before it is made, so every attempt
(a retried read is charged again) reserves the last cost seen - or the documented
example's 2.5 units before any was seen - and settles on the reported one afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# The documented example of a profile read reports a cost of 2.5 units.
ASSUMED_COST = 2.5


class ProfileQuota:
    """A token bucket of quota units, refilled continuously at `units_per_minute`."""

    def __init__(
        self,
        units_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rate = units_per_minute / 60.0
        self._capacity = float(units_per_minute)
        self._available = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self.estimate = ASSUMED_COST
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._available = min(self._capacity, self._available + (now - self._updated) * self._rate)
        self._updated = now

    async def wait(self) -> None:
        """Before each attempt: wait until the estimated cost is available, and take it."""
        async with self._lock:
            self._refill()
            if self._available < self.estimate:
                await self._sleep((self.estimate - self._available) / self._rate)
                self._refill()
            self._available -= self.estimate

    def settle(self, reported: object) -> None:
        """After an answer: charge what Insider reported instead of the estimate."""
        if isinstance(reported, int | float) and not isinstance(reported, bool) and reported >= 0:
            self._available -= float(reported) - self.estimate
            self.estimate = float(reported)
