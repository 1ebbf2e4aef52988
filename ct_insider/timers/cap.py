"""The cap on open timer workflows per kind: `OpenTimerCap`, a `TimerAdmission`.

Every open timer workflow costs Temporal storage and, while cached, worker memory; a cart
flood (a bot filling carts, an import creating millions) must not open timers without end.
The cap counts a kind's running workflows with one Temporal visibility count
(`CtTimerKind="cart" AND ExecutionStatus="Running"`) and reuses that count for
`count_cache_seconds`, adding the starts it admitted meanwhile, so a start costs no extra
call. Visibility lags a little behind starts and ends; the local additions keep a burst
from overshooting the cap by more than what closed in the same seconds.

At the cap `admits_new` returns False: the caller starts no workflow (the cart is not
reminded; the event it came with is still delivered). Each refusal is counted in
`ct_insider_timer_starts_refused{kind}`, and a warning names the kind, the count, the cap
and the setting, once per count (at most one line per `count_cache_seconds` and kind: a
flood of carts must not flood the log too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client

from ct_insider import telemetry
from ct_insider.config import TimerCapSettings
from ct_insider.logging import get_logger
from ct_insider.search_attributes import TIMER_KIND
from ct_insider.timers.kinds import TimerKind

log = get_logger(__name__)

# A visibility query -> how many workflows match it.
CountQuery = Callable[[str], Awaitable[int]]


def open_timers_query(kind: TimerKind) -> str:
    """The visibility query of a kind's open timer workflows (`ct-insider timers` uses it)."""
    return f'{TIMER_KIND.name}="{kind}" AND ExecutionStatus="Running"'


def caps_of(settings: TimerCapSettings) -> dict[TimerKind, int]:
    return {"cart": settings.max_cart, "replenishment": settings.max_replenishment}


@dataclass
class _Count:
    open: int  # what visibility counted, plus the starts admitted since
    counted_at: float
    refused: int = 0  # starts refused since this count


class OpenTimerCap:
    def __init__(
        self,
        count: CountQuery,
        caps: dict[TimerKind, int],
        *,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self._caps = caps
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._counts: dict[TimerKind, _Count] = {}
        self._locks: dict[TimerKind, asyncio.Lock] = {}
        self.count_calls = 0  # visibility counts made (each is one Temporal RPC)
        telemetry.track_timer_workflows(self)

    @classmethod
    def for_client(cls, client: Client, settings: TimerCapSettings) -> OpenTimerCap:
        async def count(query: str) -> int:
            return (await client.count_workflows(query)).count

        return cls(count, caps_of(settings), cache_seconds=settings.count_cache_seconds)

    async def admits_new(self, kind: TimerKind) -> bool:
        """Whether a new timer workflow of `kind` may start; admitting it counts it as open.
        Raises what the count raised (Temporal unreachable): the start would fail too."""
        lock = self._locks.setdefault(kind, asyncio.Lock())
        async with lock:  # one count at a time per kind; the callers waiting reuse it
            current = self._counts.get(kind)
            if current is None or self._clock() - current.counted_at >= self._cache_seconds:
                self.count_calls += 1
                current = _Count(await self._count(open_timers_query(kind)), self._clock())
                self._counts[kind] = current
            cap = self._caps[kind]
            if current.open < cap:
                current.open += 1
                return True
            telemetry.TIMER_STARTS_REFUSED.add(1, {"kind": kind})
            current.refused += 1
            if current.refused == 1:
                log.warning(
                    "timer cap reached: new timer workflows are not started",
                    kind=kind,
                    open=current.open,
                    cap=cap,
                    setting=f"TIMERS_MAX_{kind.upper()}",
                )
            return False

    def open_timer_workflows(self) -> dict[str, int]:
        """The last counts (with the starts admitted since), by kind: the gauge
        `ct_insider_timer_workflows_open`."""
        return {kind: count.open for kind, count in self._counts.items()}
