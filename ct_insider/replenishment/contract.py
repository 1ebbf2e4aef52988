"""The replenishment workflow's names and input, shared by the workflow and its starter
(activities/replenishment.py), so neither imports the other."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ct_insider.insider.models import Identifiers
from ct_insider.replenishment.state import CustomerTimers, SkuTimer

WORKFLOW_TYPE = "ReplenishmentWorkflow"
CHANGES_SIGNAL = "replenishment_changes"
SEND_ACTIVITY = "send_replenishment_reminders"
# History events after which a run continues as new (well below the server's 10,240
# warning; a purchase costs ~3 events, a fired reminder ~10).
HISTORY_LIMIT = 2_000


class ReplenishmentInput(BaseModel):
    customer_key: str
    day_seconds: float = Field(default=86_400.0, gt=0)
    max_skus: int = Field(default=200, ge=1)
    history_limit: int = Field(default=HISTORY_LIMIT, ge=50)
    send_timeout_seconds: float = Field(default=60.0, gt=0)
    timers: CustomerTimers | None = None  # carried by continue-as-new


class SendReminders(BaseModel):
    customer_key: str
    identifiers: Identifiers
    timers: list[SkuTimer]


class ReplenishmentResult(BaseModel):
    ended: str  # why the run ended: nothing armed any more, or cancelled (with the reason)
    sent: int = 0  # reminders Insider acknowledged in this run (or held already)
    refused: int = 0  # reminders Insider refused (dead-lettered)
