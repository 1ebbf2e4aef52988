"""Journey shard activities: thin adapters over ct_insider/journeys/.

- `deliver_journeys` (a local activity of the shard): one batch to Insider;
- `settle_journeys` (a regular activity, heartbeating its progress): the users of a batch
  that may or may not have reached Insider;
- `finish_journeys` (local): bookkeeping a delivery could not finish itself;
- `archive_journeys` (local): the shard's dedupe archive: generations its memory let go
  of written, expired ones deleted, long-expired ones of any shard swept
  (ct_insider/journeys/archive_lane.py).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.interruption import delivery_cut_short
from ct_insider import telemetry
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.insider.errors import InsiderError
from ct_insider.journeys.archive import ArchiveView, DedupeArchive, resolve
from ct_insider.journeys.archive_lane import ArchiveWork
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
    # The batch holds forgotten signals: where the dedupe archive may have them.
    archive: ArchiveView | None = None


class DeliverResult(BaseModel):
    outcome: DeliveryOutcome
    interruption: Interruption = "unchecked"
    # "cut-short": the started-event id of the task that died; every signal the shard had
    # accepted by then may have been sent by it.
    cut_short_at: int = 0
    # Batch indices of the forgotten signals the dedupe archive holds: duplicates, not sent.
    duplicates: list[int] = Field(default_factory=list)


HEARTBEAT_SECONDS = 10.0

# The failure type of a delivery that stopped before sending anything: its batch can simply
# go again. Any other failure (a timeout, a crash) may have come after a send.
NOT_SENT = "DeliveryNotSent"


class SettleInput(BaseModel):
    lane: str
    signals: list[JourneySignal]
    users: list[PlannedUser]


class FinishInput(BaseModel):
    book: Bookkeeping


class JourneyActivities:
    def __init__(
        self, deliverer: JourneyDeliverer, settler: DoubtSettler, archive: DedupeArchive
    ) -> None:
        self._deliverer = deliverer
        self._settler = settler
        self._archive = archive

    @activity.defn
    async def deliver_journeys(self, params: DeliverInput) -> DeliverResult:
        info = activity.info()
        interruption: Interruption = "unchecked"
        cut_short_at = 0
        if params.check_interruption:
            cut_short_at = await delivery_cut_short(
                activity.client(), info.workflow_id or "", info.workflow_run_id or ""
            )
            interruption = "cut-short" if cut_short_at else "clean"
            log.info("shard checked its history", lane=params.lane, interruption=interruption)
        # A retried attempt follows one that may have sent (and then timed out).
        interrupted = interruption == "cut-short" or info.attempt > 1
        try:
            duplicates = await resolve(self._archive, params.archive, params.signals)
            outcome = await self._deliverer.deliver(
                params.lane, params.signals, interrupted=interrupted, skip=duplicates
            )
        except Exception as exc:  # the deliverer raises only before it sends anything
            log.warning("journey delivery not started", lane=params.lane, error=repr(exc))
            retryable = not isinstance(exc, CommercetoolsError | InsiderError) or exc.retryable
            raise ApplicationError(
                f"{type(exc).__name__}: {exc}", type=NOT_SENT, non_retryable=not retryable
            ) from exc
        stats = outcome.stats
        telemetry.count_records("realtime", "events", sent=stats.events)
        telemetry.count_records("realtime", "profiles", sent=stats.profiles)
        return DeliverResult(
            outcome=outcome,
            interruption=interruption,
            cut_short_at=cut_short_at,
            duplicates=duplicates,
        )

    @activity.defn
    async def settle_journeys(self, params: SettleInput) -> SettleProgress:
        info = activity.info()
        progress = (
            SettleProgress.model_validate(info.heartbeat_details[0])
            if info.heartbeat_details
            else SettleProgress()
        )

        def beat(current: SettleProgress) -> None:
            activity.heartbeat(current.model_dump(mode="json"))

        async def keep_beating() -> None:
            # A read Insider is slow to answer must not look like a dead worker (a second
            # attempt would then settle the same users at the same time).
            while True:
                await asyncio.sleep(HEARTBEAT_SECONDS)
                beat(progress)

        beating = asyncio.create_task(keep_beating())
        try:
            return await self._settler.settle(
                params.lane, params.signals, params.users, progress, beat
            )
        except (CommercetoolsError, InsiderError) as exc:
            beat(progress)
            raise as_application_error(exc) from exc
        finally:
            beating.cancel()

    @activity.defn
    async def finish_journeys(self, params: FinishInput) -> None:
        try:
            await self._deliverer.finish(params.book)
        except (CommercetoolsError, InsiderError) as exc:
            raise as_application_error(exc) from exc

    @activity.defn
    async def archive_journeys(self, params: ArchiveWork) -> None:
        try:
            await asyncio.gather(*(self._archive.write(g) for g in params.writes))
            await self._archive.delete(params.deletes)
            if params.sweep_before is not None:
                await self._archive.sweep(params.sweep_before)
        except CommercetoolsError as exc:
            raise as_application_error(exc) from exc
