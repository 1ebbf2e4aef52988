"""Settle the users of a journey delivery that may or may not have reached Insider.

A user is in doubt when the request that carried it may have been stored (a 5xx, an answer
lost), when the shard was rebuilt after a worker died during the delivery, or when one of
its signals is older than the shard's dedupe memory. For each such user, one profile read
(paced to the quota) tells which of its events Insider holds - recognised by the account's
matching (`SettleMatching`: by event id, or by fingerprint where the account's reads do not
return custom event params) -; the rest are sent again, and their outcome is settled the
same way if that request is lost too.

Progress is kept per user (`SettleProgress`, heartbeated by the activity): a retried
attempt never reads again for a user already settled, and a read that fails for one user
does not hold up the others - the attempt fails at the end, for Temporal to retry what is
left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pydantic import BaseModel, Field

from ct_insider.bounded import bounded
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderError, InsiderUnavailable
from ct_insider.insider.held import HeldEventCheck, Matching, Sought
from ct_insider.journeys.delivery import (
    Bookkeeping,
    JourneyDeliverer,
    record_in_ledger,
    redriven_letters,
    signal_letter,
)
from ct_insider.journeys.plan import PlannedUser
from ct_insider.journeys.signals import JourneySignal
from ct_insider.logging import get_logger
from ct_insider.setup.matching import SettleMatching
from ct_insider.sync.orders import SETTLE_CONCURRENCY

log = get_logger(__name__)

# Reads and re-sends for one user within one attempt before the attempt gives way to a
# Temporal retry (with its backoff) - only reached while Insider keeps losing answers.
MAX_ROUNDS_PER_USER = 4


class SettleProgress(BaseModel):
    settled: list[int] = Field(default_factory=list)  # indices of the users settled
    found: int = 0  # events Insider already held
    resent: int = 0  # events sent again and acknowledged
    profile_reads: int = 0
    dead_lettered: int = 0


class DoubtSettler:
    def __init__(
        self, insider: InsiderClient, deliverer: JourneyDeliverer, matching: SettleMatching
    ) -> None:
        self._insider = insider
        self._held = HeldEventCheck(insider)
        self._deliverer = deliverer
        self._matching = matching

    async def settle(
        self,
        lane: str,
        signals: list[JourneySignal],
        users: list[PlannedUser],
        progress: SettleProgress,
        on_progress: Callable[[SettleProgress], None],
    ) -> SettleProgress:
        failure: InsiderError | None = None
        open_users = [i for i in range(len(users)) if i not in progress.settled]
        if not open_users:
            return progress
        matching = await self._matching.current()

        async def settle_one(index: int) -> int:
            try:
                await self._settle_user(lane, signals, users[index], progress, matching)
            except InsiderError as exc:
                if exc.retryable or exc.maybe_stored or exc.status_code in (401, 403):
                    raise
                # Insider refuses to read or take this person for good (a 400): parked
                # with the reason, so the shard can go on.
                reasons = [f"could not be settled: {exc}"]
                letters = [signal_letter(lane, signals[s], reasons) for s in users[index].signals]
                await self._deliverer.finish(Bookkeeping(letters=letters))
                progress.dead_lettered += len(letters)
            return index

        if not progress.profile_reads:
            await asyncio.sleep(self._insider.settle_grace_seconds)
        async with bounded(SETTLE_CONCURRENCY, [settle_one(i) for i in open_users]) as outcomes:
            for outcome in outcomes:
                try:
                    progress.settled.append(await outcome)
                except InsiderError as exc:
                    failure = exc
                    log.warning("doubt not settled yet", lane=lane, error=str(exc))
                    continue
                on_progress(progress)
        if failure is not None:
            raise failure
        return progress

    async def _settle_user(
        self,
        lane: str,
        signals: list[JourneySignal],
        user: PlannedUser,
        progress: SettleProgress,
        matching: Matching,
    ) -> None:
        for _ in range(MAX_ROUNDS_PER_USER):
            book = Bookkeeping()
            missing = user.events
            if user.events:
                held = await self._held.held(
                    user.identifiers,
                    [Sought.of(planned.event) for planned in user.events],
                    [Sought.of(event) for event in user.delivered_before],
                    matching,
                )
                progress.profile_reads += 1
                found = [p for p, is_held in zip(user.events, held, strict=True) if is_held]
                missing = [p for p, is_held in zip(user.events, held, strict=True) if not is_held]
                progress.found += len(found)
                record_in_ledger(found, book)
                # A re-driven signal is done once every one of its events is in Insider.
                book.redriven = redriven_letters(
                    signals, [s for s in user.signals if all(m.signal != s for m in missing)]
                )
                user.delivered_before.extend(p.event for p in found)
            if not missing and user.attributes is None:
                await self._deliverer.finish(book)
                return
            rest = user.model_copy(update={"events": missing})
            try:
                result = await self._insider.upsert_users(
                    [rest.user()],
                    skip_hook=self._deliverer.historical(rest.user()),
                    repeatable=not missing,
                )
            except InsiderError as exc:
                await self._deliverer.finish(book)
                if not exc.maybe_stored:
                    raise
                user = rest  # lost again: read again
                continue
            if result.failures:
                reasons = result.failures[0].reasons
                book.letters.extend(signal_letter(lane, signals[s], reasons) for s in rest.signals)
                progress.dead_lettered += len(rest.signals)
            else:
                record_in_ledger(missing, book)
                book.redriven = redriven_letters(signals, rest.signals)
                progress.resent += len(missing)
            await self._deliverer.finish(book)
            return
        raise InsiderUnavailable(
            0, "answers keep getting lost; settlement continues on retry", maybe_stored=True
        )
