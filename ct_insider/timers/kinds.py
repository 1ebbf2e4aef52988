"""The contract every timer workflow keeps (cart recovery, replenishment), so that one CLI
(`ct-insider timers list|cancel`), the Temporal UI and the caps treat them alike.

- Its workflow id is `workflow_id(kind, key)`: one workflow per cart (`cart-<cart id>`),
  one per customer for replenishment (`replenish-<customer key>`), started by
  signal-with-start, so redeliveries and retries find the same one.
- It sets `CtTimerKind` to its kind at its start, and `CtTimerDueAt` to when its next timer
  fires (unset while none is armed); `CtRunKind` is its kind too.
- It takes the `CANCEL_SIGNAL` signal (a `CancelTimers`): it ends without sending what its
  timers would have sent, saying why in its result.
- It answers the `TIMERS_QUERY` query with its armed timers (`ArmedTimer`s).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol, get_args

from pydantic import BaseModel

TimerKind = Literal["cart", "replenishment"]
TIMER_KINDS: tuple[TimerKind, ...] = get_args(TimerKind)

_PREFIX: dict[TimerKind, str] = {"cart": "cart-", "replenishment": "replenish-"}

CANCEL_SIGNAL = "cancel_timers"
TIMERS_QUERY = "timers"


def workflow_id(kind: TimerKind, key: str) -> str:
    return f"{_PREFIX[kind]}{key}"


class CancelTimers(BaseModel):
    reason: str  # e.g. "cancelled by an operator"


class ArmedTimer(BaseModel):
    kind: TimerKind
    key: str  # the cart id, or "<customer key>/<sku>"
    due_at: datetime
    what: str  # e.g. "reminder 1 of 2", "replenishment of SKU-1 (every 30 days, attribute)"


class TimerAdmission(Protocol):
    """Whether a new timer workflow of a kind may start (each kind has a configurable cap
    on open timers; at the cap, a clear log line and a metric, and the start is refused)."""

    async def admits_new(self, kind: TimerKind) -> bool: ...
