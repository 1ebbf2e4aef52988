"""What the order paths call: plan timer changes with a batch, apply them once delivered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from ct_insider.config import ReplenishmentSettings
from ct_insider.logging import get_logger
from ct_insider.replenishment.model import TimerChange
from ct_insider.replenishment.planner import OrderToPlan, ReplenishmentPlanner
from ct_insider.replenishment.port import ReplenishmentTimers, by_customer

log = get_logger(__name__)


class Replenishment:
    def __init__(
        self,
        planner: ReplenishmentPlanner,
        timers: ReplenishmentTimers,
        settings: ReplenishmentSettings,
    ) -> None:
        self._planner = planner
        self._timers = timers
        self._settings = settings
        self.past_due = 0  # purchases whose reminder was already due when delivered

    async def plan(self, orders: Sequence[OrderToPlan]) -> dict[str, dict[str, list[TimerChange]]]:
        return await self._planner.plan(orders)

    async def delivered(self, changes: Sequence[TimerChange]) -> None:
        """These changes' events are in Insider: hand them to the customers' timers.
        Raises when the timers may not have them (the caller's retry applies them again)."""
        if not changes:
            return
        groups, past_due = by_customer(changes, datetime.now(UTC), self._settings.day_seconds)
        if past_due:
            self.past_due += past_due
            log.info("replenishment timers not armed: already due", purchases=past_due)
        if groups:
            await self._timers.apply(groups)
