"""Journey shard activities: thin adapters over ct_insider/journeys/.

- `deliver_journeys` (a local activity of the shard): one batch to Insider;
- `settle_journeys` (a regular activity, heartbeating its progress): the users of a batch
  that may or may not have reached Insider;
- `finish_journeys` (local): bookkeeping a delivery could not finish itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from temporalio import activity

from activities.errors import as_application_error
from activities.interruption import delivery_cut_short
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.insider.errors import InsiderError
from ct_insider.journeys.delivery import Bookkeeping, DeliveryOutcome, JourneyDeliverer
from ct_insider.journeys.plan import PlannedUser
from ct_insider.journeys.settle import DoubtSettler, SettleProgress
from ct_insider.journeys.signals import JourneySignal
from ct_insider.logging import get_logger

log = get_logger(__name__)

Interruption = Literal["unchecked", "clean", "cut-short"]


class DeliverInput(BaseModel):
    lane: str  # the shard's workflow id: names the run in logs and dead letters
    signals: list[JourneySignal]
    # The shard was rebuilt from history and has not yet seen a clean delivery since: ask
    # Temporal whether the task before was cut short (then this batch may repeat it).
    check_interruption: bool = False


class DeliverResult(BaseModel):
    outcome: DeliveryOutcome
    interruption: Interruption = "unchecked"


class SettleInput(BaseModel):
    lane: str
    signals: list[JourneySignal]
    users: list[PlannedUser]


class FinishInput(BaseModel):
    book: Bookkeeping


class JourneyActivities:
    def __init__(self, deliverer: JourneyDeliverer, settler: DoubtSettler) -> None:
        self._deliverer = deliverer
        self._settler = settler

    @activity.defn
    async def deliver_journeys(self, params: DeliverInput) -> DeliverResult:
        interruption: Interruption = "unchecked"
        if params.check_interruption:
            info = activity.info()
            cut = await delivery_cut_short(
                activity.client(), info.workflow_id or "", info.workflow_run_id or ""
            )
            interruption = "cut-short" if cut else "clean"
            log.info("shard rebuilt from history", lane=params.lane, interruption=interruption)
        try:
            outcome = await self._deliverer.deliver(
                params.lane, params.signals, interrupted=interruption == "cut-short"
            )
        except (CommercetoolsError, InsiderError) as exc:
            log.warning("journey delivery not started", lane=params.lane, error=str(exc))
            raise as_application_error(exc) from exc
        return DeliverResult(outcome=outcome, interruption=interruption)

    @activity.defn
    async def settle_journeys(self, params: SettleInput) -> SettleProgress:
        info = activity.info()
        progress = (
            SettleProgress.model_validate(info.heartbeat_details[0])
            if info.heartbeat_details
            else SettleProgress()
        )
        try:
            return await self._settler.settle(
                params.lane,
                params.signals,
                params.users,
                progress,
                lambda p: activity.heartbeat(p.model_dump(mode="json")),
            )
        except (CommercetoolsError, InsiderError) as exc:
            activity.heartbeat(progress.model_dump(mode="json"))
            raise as_application_error(exc) from exc

    @activity.defn
    async def finish_journeys(self, params: FinishInput) -> None:
        try:
            await self._deliverer.finish(params.book)
        except (CommercetoolsError, InsiderError) as exc:
            raise as_application_error(exc) from exc
