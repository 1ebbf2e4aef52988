"""What a delivered order event means for a customer's replenishment timers.

Computed when an order batch is prepared (the period is resolved then, reads included) and
carried with the event it belongs to (PreparedOrder, the in-flight marker, a journey plan),
so every path applies it once the event is known to be in Insider - whichever way that was
learned (an answer, a settled doubt, a recovered in-flight marker).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ct_insider.insider.models import Identifiers

PeriodSource = Literal["attribute", "learned"]


class ArmTimer(BaseModel):
    """A purchase of a SKU with a known period: (re)arm that customer's timer for it."""

    action: Literal["arm"] = "arm"
    customer_key: str  # the customer id, or a keyed hash for guests (never raw PII)
    identifiers: Identifiers  # the profile the purchase went to (the reminder goes there)
    sku: str
    order_id: str
    line_id: str
    name: str | None = None
    quantity: int
    purchased_at: datetime
    period_days: float
    period_source: PeriodSource
    # Its reminder was already due when it was delivered (a backfill, a late delivery):
    # it arms nothing, but still supersedes an earlier purchase's timer.
    lapsed: bool = False

    def purchase(self) -> tuple[datetime, str, str]:
        """Orders purchases: the latest one holds the timer (ties by order, then line)."""
        return (self.purchased_at, self.order_id, self.line_id)


class DisarmTimer(BaseModel):
    """A refund or cancellation of a purchased line: its timer, if still armed, goes."""

    action: Literal["disarm"] = "disarm"
    customer_key: str
    sku: str
    order_id: str
    line_id: str
    reason: Literal["refund", "cancellation"]


TimerChange = Annotated[ArmTimer | DisarmTimer, Field(discriminator="action")]


class TimerChanges(BaseModel):
    """The changes of one customer's timers, in the order they happened (one signal)."""

    customer_key: str
    changes: list[TimerChange] = Field(default_factory=list)
