"""One customer's replenishment timers: the state their workflow holds (pure, deterministic).

Per SKU, the latest purchase seen and what became of it: `armed` (its reminder is due at
`due_at`), `sent`, or `disarmed` (refunded or cancelled). A purchase older than (or the
same as) the one held changes nothing, so redeliveries and replays arm once; a newer one
replaces it and moves the timer. Records that are no longer armed stay (a replay of their
purchase must not arm again) until the SKU cap needs their room.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ct_insider.insider.models import Identifiers
from ct_insider.replenishment.model import ArmTimer, DisarmTimer, TimerChange
from ct_insider.replenishment.periods import due_at
from ct_insider.timers.kinds import ArmedTimer

# lapsed: superseded by a purchase whose own reminder was already due when it arrived
Status = Literal["armed", "sent", "disarmed", "lapsed"]
Applied = Literal["armed", "moved", "disarmed", "lapsed", "unchanged", "refused"]


class SkuTimer(BaseModel):
    purchase: ArmTimer
    due_at: datetime
    status: Status = "armed"

    def what(self) -> str:
        p = self.purchase
        return f"replenishment of {p.sku} (every {p.period_days:g} days, {p.period_source})"


class CustomerTimers(BaseModel):
    customer_key: str
    identifiers: Identifiers | None = None  # of the latest purchase: where reminders go
    skus: dict[str, SkuTimer] = Field(default_factory=dict)
    refused: int = 0  # arms refused: the customer had `max_skus` armed SKUs already

    def apply(self, change: TimerChange, day_seconds: float, max_skus: int) -> Applied:
        if isinstance(change, DisarmTimer):
            return self._disarm(change)
        held = self.skus.get(change.sku)
        if held is not None and change.purchase() <= held.purchase.purchase():
            return "unchanged"  # the same purchase again, or an older one
        if change.lapsed:
            if held is None or held.status != "armed":
                return "unchanged"
            # Bought again since: the earlier purchase's reminder would be about the wrong
            # one, and this one's moment has passed.
            held.purchase, held.status = change, "lapsed"
            return "lapsed"
        if held is None and not self._room_for_one(max_skus):
            self.refused += 1
            return "refused"
        self.skus[change.sku] = SkuTimer(
            purchase=change, due_at=due_at(change.purchased_at, change.period_days, day_seconds)
        )
        self.identifiers = change.identifiers
        return "moved" if held is not None and held.status == "armed" else "armed"

    def _disarm(self, change: DisarmTimer) -> Applied:
        held = self.skus.get(change.sku)
        if held is None or held.status != "armed":
            return "unchanged"
        if (held.purchase.order_id, held.purchase.line_id) != (change.order_id, change.line_id):
            return "unchanged"  # an earlier purchase was refunded: the later one still counts
        held.status = "disarmed"
        return "disarmed"

    def _room_for_one(self, max_skus: int) -> bool:
        """Make room for a new SKU by forgetting the oldest records no longer armed."""
        if len(self.skus) < max_skus:
            return True
        idle = sorted(
            (t.purchase.purchase(), sku) for sku, t in self.skus.items() if t.status != "armed"
        )
        if not idle:
            return False
        del self.skus[idle[0][1]]
        return True

    def earliest_due(self) -> datetime | None:
        armed = [t.due_at for t in self.skus.values() if t.status == "armed"]
        return min(armed) if armed else None

    def due(self, now: datetime) -> list[SkuTimer]:
        """The armed timers whose moment has come, in due order."""
        ready = [t for t in self.skus.values() if t.status == "armed" and t.due_at <= now]
        return sorted(ready, key=lambda t: (t.due_at, t.purchase.sku))

    def mark_sent(self, sent: list[SkuTimer]) -> None:
        """Sent: unless a newer purchase replaced the record while the reminder went out."""
        for timer in sent:
            held = self.skus.get(timer.purchase.sku)
            if held is not None and held.purchase.purchase() == timer.purchase.purchase():
                held.status = "sent"

    def armed(self) -> list[ArmedTimer]:
        return [
            ArmedTimer(
                kind="replenishment",
                key=f"{self.customer_key}/{sku}",
                due_at=timer.due_at,
                what=timer.what(),
            )
            for sku, timer in sorted(self.skus.items())
            if timer.status == "armed"
        ]
