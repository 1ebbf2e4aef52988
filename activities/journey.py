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

import httpx
from pydantic import BaseModel, Field, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

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
from ct_insider.sync.reports import validation_reasons

log = get_logger(__name__)

Interruption = Literal["unchecked", "clean", "cut-short"]


class DeliverInput(BaseModel):
    lane: str  # the shard's workflow id: names the run in logs and dead letters
    signals: list[JourneySignal]
    # The shard was rebuilt from history and has no answer yet: ask Temporal whether a task
    # before it was cut short (then this batch, and more, may repeat what that task sent).
    check_interruption: bool = False
    # The shard's history length in the first task it ran since it was rebuilt: the
    # question is about the tasks before that one (0: before the newest event).
    rebuilt_at: int = 0
    # The batch holds forgotten signals: where the dedupe archive may have them.
    archive: ArchiveView | None = None


class HistoryCheck(BaseModel):
    """What a delivery learned from the shard's history (when asked to check it)."""

    interruption: Interruption = "unchecked"
    # "cut-short": every signal the shard had accepted by this point of its history (the
    # task it was rebuilt at) may have been sent by the task that died.
    cut_short_at: int = 0


class DeliverResult(HistoryCheck):
    outcome: DeliveryOutcome
    # Batch indices of the forgotten signals the dedupe archive holds: duplicates, not sent.
    duplicates: list[int] = Field(default_factory=list)


class NotSent(HistoryCheck):
    """The details of a delivery that stopped before sending anything (failure type
    NOT_SENT): its batch goes again, with what the history check found."""

    # A record of the batch, not a dependency that is down, made it fail: it would fail
    # the same way every time (the shard counts it against each signal of the batch).
    refused: bool = False
    reason: str = ""


HEARTBEAT_SECONDS = 10.0

# The failure type of a delivery that stopped before sending anything: its batch can simply
# go again. Any other failure (a timeout, a crash) may have come after a send.
NOT_SENT = "DeliveryNotSent"


def not_sent(exc: Exception, check: HistoryCheck) -> ApplicationError:
    """The failure of a delivery that `exc` stopped before it sent anything. A dependency
    down (or refusing our credentials) fails every batch alike: it is never counted
    against the signals, and retried at once when it may pass."""
    if isinstance(exc, CommercetoolsError | InsiderError):
        transient = exc.retryable
        unavailable = transient or exc.status_code in (401, 403)
    else:
        transient = unavailable = isinstance(exc, httpx.TransportError | RPCError)
    # Parsing errors quote the values they refuse: their reasons do not.
    detail = "; ".join(validation_reasons(exc)) if isinstance(exc, ValidationError) else str(exc)
    details = NotSent(
        **check.model_dump(), refused=not unavailable, reason=f"{type(exc).__name__}: {detail}"
    )
    return ApplicationError(
        f"{type(exc).__name__}: {exc}",
        details.model_dump(mode="json"),
        type=NOT_SENT,
        non_retryable=not transient,
    )


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
        check = HistoryCheck()
        try:
            if params.check_interruption:
                check = await self._check_history(params)
            # A retried attempt follows one that may have sent (and then timed out).
            interrupted = check.interruption == "cut-short" or info.attempt > 1
            duplicates = await resolve(self._archive, params.archive, params.signals)
            outcome = await self._deliverer.deliver(
                params.lane, params.signals, interrupted=interrupted, skip=duplicates
            )
        except Exception as exc:  # the deliverer raises only before it sends anything
            log.warning("journey delivery not started", lane=params.lane, error=repr(exc))
            # What the check found travels with the failure: the shard keeps it.
            raise not_sent(exc, check) from exc
        stats = outcome.stats
        telemetry.count_records("realtime", "events", sent=stats.events)
        telemetry.count_records("realtime", "profiles", sent=stats.profiles)
        return DeliverResult(outcome=outcome, duplicates=duplicates, **check.model_dump())

    async def _check_history(self, params: DeliverInput) -> HistoryCheck:
        info = activity.info()
        died = await delivery_cut_short(
            activity.client(),
            info.workflow_id or "",
            info.workflow_run_id or "",
            as_of=params.rebuilt_at,
        )
        log.info("shard checked its history", lane=params.lane, cut_short=bool(died))
        if not died:
            return HistoryCheck(interruption="clean")
        return HistoryCheck(interruption="cut-short", cut_short_at=max(died, params.rebuilt_at))

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
