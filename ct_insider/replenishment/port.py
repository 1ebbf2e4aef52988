"""The port order paths arm timers through, and what is sent through it (pure grouping).

ct_insider knows no Temporal: activities/replenishment.py implements `ReplenishmentTimers`
with the Temporal client (one signal per customer, signal-with-start for a new one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from ct_insider.replenishment.model import ArmTimer, DisarmTimer, TimerChange, TimerChanges
from ct_insider.replenishment.periods import due_at


class ReplenishmentTimers(Protocol):
    async def apply(self, changes: Sequence[TimerChanges]) -> None:
        """Hand each customer's changes to their timers; idempotent (a repeat changes
        nothing). Raises when a change may not have arrived (the caller retries)."""
        ...


def by_customer(
    changes: Sequence[TimerChange], now: datetime, day_seconds: float
) -> tuple[list[TimerChanges], int]:
    """Group changes per customer, in order. Arms already due (a backfill of old orders, a
    late delivery: the reminder's moment has passed) are marked `lapsed`: they arm nothing
    but end an earlier purchase's timer. Lines armed and disarmed in the same delivery (a
    cancelled order seen for the first time) are left out. Returns the groups and how many
    arms were past due."""

    def line(change: TimerChange) -> tuple[str, str, str]:
        return (change.customer_key, change.order_id, change.line_id)

    undone = {line(c) for c in changes if isinstance(c, DisarmTimer)}
    armed = {line(c) for c in changes if isinstance(c, ArmTimer)}
    groups: dict[str, TimerChanges] = {}
    past_due = 0
    for change in changes:
        if isinstance(change, ArmTimer):
            if line(change) in undone:
                continue
            if due_at(change.purchased_at, change.period_days, day_seconds) <= now:
                past_due += 1
                change = change.model_copy(update={"lapsed": True})
        elif line(change) in armed:
            continue
        key = change.customer_key
        groups.setdefault(key, TimerChanges(customer_key=key)).changes.append(change)
    return list(groups.values()), past_due
