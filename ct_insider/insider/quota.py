"""Pacing profile reads to Insider's profile quota: units per minute, per account.

Insider reports what each read cost (`"quota": {"cost": 2.5, ...}` when asked with
`"quota": true`); the cost of a read is not known before it is made, so each read first
reserves the last cost seen (or a conservative guess) and then settles on the reported one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# The documented example of a profile read reports a cost of 2.5 units.
ASSUMED_COST = 2.5


class Charge:
    def __init__(self, reserved: float) -> None:
        self.reserved = reserved
        self.actual: float | None = None

    def cost(self, reported: object) -> None:
        if isinstance(reported, int | float) and reported >= 0:
            self.actual = float(reported)


class ProfileQuota:
    """A token bucket of quota units, refilled continuously at `units_per_minute`."""

    def __init__(self, units_per_minute: float) -> None:
        self._rate = units_per_minute / 60.0
        self._capacity = float(units_per_minute)
        self._available = self._capacity
        self._updated = time.monotonic()
        self._estimate = ASSUMED_COST
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._available = min(self._capacity, self._available + (now - self._updated) * self._rate)
        self._updated = now

    async def _reserve(self, units: float) -> None:
        async with self._lock:
            self._refill()
            if self._available < units:
                await asyncio.sleep((units - self._available) / self._rate)
                self._refill()
            self._available -= units

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Charge]:
        """Reserve the expected cost of one read; settle on what Insider reported."""
        charge = Charge(self._estimate)
        await self._reserve(charge.reserved)
        try:
            yield charge
        finally:
            if charge.actual is not None:
                self._estimate = charge.actual
                async with self._lock:
                    self._available -= charge.actual - charge.reserved
