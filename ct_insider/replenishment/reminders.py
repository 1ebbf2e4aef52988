"""The `replenishment_due` event, and sending a customer's due reminders exactly once.

Each reminder carries an id derived from its purchase (`custom.event_id`), and its
timestamp is the moment it fell due, so a send repeated for any reason is recognised in
the profile (held.py, by id or fingerprint per the account's matching). A request whose
answer is lost, or an attempt that may have been cut short (a retry after a worker died),
is settled by one profile read before anything is sent again - the same check the journey
shards' settlement uses. Upserts go through the worker's UpsertCoalescer: reminders due
together across customers share requests.
"""

from __future__ import annotations

import asyncio
import hashlib

from pydantic import BaseModel, Field

from ct_insider.deadletters import DeadLetterDraft, DeadLetterStore
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.coalescer import UpsertCoalescer
from ct_insider.insider.errors import InsiderError, InsiderUnavailable
from ct_insider.insider.held import HeldEventCheck, Sought
from ct_insider.insider.models import Event, Identifiers, User
from ct_insider.logging import get_logger
from ct_insider.mapping import normalize
from ct_insider.replenishment.state import SkuTimer
from ct_insider.setup.matching import SettleMatching

log = get_logger(__name__)

# Sends and reads for one customer within one attempt before it gives way to a retry.
MAX_ROUNDS = 4
# The reminder's custom params (besides the predefined product_id, name, quantity): they
# must be defined on the event in InOne (ct_insider/setup/inone.py lists them).
REMINDER_PARAMS = ("event_id", "last_purchase_date", "period_days", "period_source", "order_id")


def reminder_id(timer: SkuTimer) -> str:
    p = timer.purchase
    digest = hashlib.sha256(f"{p.customer_key}/{p.sku}/{p.order_id}/{p.line_id}".encode())
    return "replenish-" + digest.hexdigest()[:32]


def reminder_event(timer: SkuTimer, event_name: str) -> Event:
    p = timer.purchase
    params: dict[str, object] = {
        "product_id": p.sku,
        "name": p.name,
        "quantity": p.quantity,
        "custom": {
            "event_id": reminder_id(timer),
            "last_purchase_date": normalize.timestamp(p.purchased_at),
            "period_days": p.period_days,
            "period_source": p.period_source,
            "order_id": p.order_id,
        },
    }
    return Event(
        event_name=event_name,
        timestamp=normalize.timestamp(timer.due_at),
        event_params={k: v for k, v in params.items() if v is not None},
    )


class ReminderOutcome(BaseModel):
    sent: list[str] = Field(default_factory=list)  # SKUs whose reminder Insider acknowledged
    found: list[str] = Field(default_factory=list)  # SKUs whose reminder it held already
    refused: list[str] = Field(default_factory=list)  # SKUs dead-lettered (Insider refused)
    profile_reads: int = 0


class ReminderSender:
    def __init__(
        self,
        insider: InsiderClient,
        coalescer: UpsertCoalescer,
        matching: SettleMatching,
        letters: DeadLetterStore,
        event_name: str,
    ) -> None:
        self._insider = insider
        self._coalescer = coalescer
        self._held = HeldEventCheck(insider)
        self._matching = matching
        self._letters = letters
        self._event_name = event_name

    async def send(
        self, lane: str, identifiers: Identifiers, timers: list[SkuTimer], *, in_doubt: bool
    ) -> ReminderOutcome:
        """`in_doubt`: an earlier attempt may have sent some; they are looked up first."""
        outcome = ReminderOutcome()
        open_ = list(timers)
        if in_doubt:
            open_ = await self._not_held(identifiers, open_, outcome)
        for _ in range(MAX_ROUNDS):
            if not open_:
                return outcome
            events = [reminder_event(t, self._event_name) for t in open_]
            try:
                result = await self._coalescer.upsert(
                    [User(identifiers=identifiers, events=events)]
                )
            except InsiderError as exc:
                if not exc.maybe_stored:
                    if exc.status_code == 400:
                        await self._refuse(lane, open_, [str(exc)], outcome)
                        return outcome
                    raise  # surely not stored: the activity's retry sends them
                log.warning("replenishment reminder answer lost", lane=lane, error=str(exc))
                await asyncio.sleep(self._insider.settle_grace_seconds)
                open_ = await self._not_held(identifiers, open_, outcome)
                continue
            if result.failures:
                await self._refuse(lane, open_, result.failures[0].reasons, outcome)
            else:
                outcome.sent.extend(t.purchase.sku for t in open_)
            return outcome
        raise InsiderUnavailable(
            0, "answers keep getting lost; the reminders are settled on retry", maybe_stored=True
        )

    async def _not_held(
        self, identifiers: Identifiers, timers: list[SkuTimer], outcome: ReminderOutcome
    ) -> list[SkuTimer]:
        sought = [Sought.of(reminder_event(t, self._event_name)) for t in timers]
        held = await self._held.held(identifiers, sought, (), await self._matching.current())
        outcome.profile_reads += 1
        outcome.found.extend(t.purchase.sku for t, h in zip(timers, held, strict=True) if h)
        return [t for t, h in zip(timers, held, strict=True) if not h]

    async def _refuse(
        self, lane: str, timers: list[SkuTimer], reasons: list[str], outcome: ReminderOutcome
    ) -> None:
        """Insider refused the reminders (e.g. the event is not created in InOne): parked
        as dead letters with the reason, never retried blindly."""
        await self._letters.put(
            [
                DeadLetterDraft(
                    entity="replenishment-reminder",
                    record_id=reminder_id(t),
                    reasons=reasons,
                    run=lane,
                    path="realtime",
                )
                for t in timers
            ]
        )
        outcome.refused.extend(t.purchase.sku for t in timers)
        log.warning(
            "replenishment reminders refused by Insider",
            lane=lane,
            skus=[t.purchase.sku for t in timers],
            reasons=reasons,
        )
