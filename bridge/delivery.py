"""One commercetools notification taken in, whatever carried it: the HTTP webhook
(bridge/app.py), an Azure Event Grid delivery (bridge/eventgrid.py), an Amazon SNS HTTPS
delivery (bridge/sns.py) or a message pulled from SQS (bridge/sqs.py). Every path routes, admits, commits and dead-letters the same way,
so each gives the same guarantee: a notification is taken once Temporal stored its signals
(or the dead-letter store its letters); otherwise `NotTaken` says the carrier must deliver
it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.responses import JSONResponse

from bridge.admission import SignalRefusal, admit
from bridge.carts import CartSignal
from bridge.commit import ShardPart
from bridge.dispatch import Dispatcher, TemporalUnavailable
from bridge.letters import (
    NOTIFICATION_ENTITY,
    RUN,
    LetterBox,
    LettersNotStored,
    Refusal,
    signal_refusal,
)
from bridge.routing import Ignored, NotificationRouter, Unroutable
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.deadletters import DeadLetterDraft
from ct_insider.journeys.envelopes import Notification
from ct_insider.logging import get_logger
from workflows.catalog_changes import CatalogChange

log = get_logger(__name__)

TEST_NOTIFICATION = "subscription test notification"


# What a 503 tells the sender to wait before delivering again.
RETRY_AFTER_SECONDS = "5"


def unavailable(reason: str) -> JSONResponse:
    """The answer to what a retry can fix: 503 with Retry-After."""
    return JSONResponse(
        {"error": "temporarily unavailable, deliver again", "reason": reason},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


class NotTaken(Exception):
    """Nothing was refused for good, something a retry can fix was in the way (Temporal,
    commercetools, the dead-letter store): deliver again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Taken:
    """What became of a notification: `status` is accepted, dead-lettered, acknowledged (the
    subscription's test notification), or an `Ignored` counter (ignored, gone)."""

    status: str
    signals: int = 0
    refusals: Sequence[Refusal] = field(default_factory=tuple)
    reason: str | None = None

    def answer(self) -> dict[str, Any]:
        """The webhook's 202 body."""
        if self.status == "accepted" or self.status == "dead-lettered":
            return {
                "status": self.status,
                "signals": self.signals,
                "dead_lettered": [{"key": r.letter.key, "cause": r.cause} for r in self.refusals],
            }
        return {"status": self.status, "reason": self.reason}


def unreadable_refusal(carrier: str, carrier_id: str, reason: str) -> Refusal:
    """A letter for a message its carrier (a queue) holds that is no commercetools delivery
    we can read: it names the carrier's message, never its body (it may hold personal
    data); nothing can re-drive it, the reason says what was wrong."""
    return Refusal(
        "unreadable",
        DeadLetterDraft(
            entity=NOTIFICATION_ENTITY,
            record_id=f"{carrier}:{carrier_id}",
            reasons=[
                f"{carrier} message {carrier_id} is not a commercetools delivery: {reason} "
                "(not re-drivable: fix the sender; the next delta sync carries the change; "
                "then purge the letter)"
            ],
            run=RUN,
            path="realtime",
        ),
        kind=carrier,
    )


class Deliveries:
    """Takes notifications into the journeys, the catalog and the carts (or the dead-letter
    store), counting what became of each in `counters` (the bridge's /stats)."""

    def __init__(
        self,
        router: NotificationRouter,
        dispatcher: Dispatcher,
        letters: LetterBox,
        counters: Counter[str],
    ) -> None:
        self.router = router
        self.dispatcher = dispatcher
        self.letters = letters
        self.counters = counters

    async def take(self, notification: Notification | None) -> Taken:
        """Raises NotTaken. None: the subscription's test notification."""
        if notification is None:
            self.counters["test_notification"] += 1
            return Taken("acknowledged", reason=TEST_NOTIFICATION)
        parts: list[ShardPart | CatalogChange | CartSignal] = []
        refusals: list[Refusal] = []
        try:
            for signal in await self.router.signals(notification):
                if isinstance(signal, CatalogChange | CartSignal):
                    parts.append(signal)
                    continue
                admitted = admit(signal)
                if isinstance(admitted, SignalRefusal):
                    refusals.append(signal_refusal(notification, signal, admitted))
                else:
                    parts.append(admitted)
            if parts:
                await self.dispatcher.dispatch(parts)
        except Ignored as ignored:
            self.counters[f"{ignored.counter}:{notification.type}"] += 1
            return Taken(ignored.counter, reason=ignored.reason)
        except Unroutable as unroutable:
            refusals.append(unroutable.refusal)
        except (TemporalUnavailable, CommercetoolsError, httpx.TransportError) as exc:
            # What a retry can fix: the router lets only those commercetools errors through.
            self.counters["unavailable"] += 1
            log.warning("delivery not accepted", error=str(exc), type=notification.type)
            raise NotTaken(type(exc).__name__) from exc
        if refusals:
            await self.refuse(refusals)
        if parts:
            self.counters[f"accepted:{notification.type}"] += 1
        return Taken(
            "accepted" if parts else "dead-lettered", signals=len(parts), refusals=refusals
        )

    async def refuse(self, refusals: Sequence[Refusal]) -> None:
        """Store the letters (counted and logged by the letter box); raises NotTaken."""
        try:
            await self.letters.post(refusals)
        except LettersNotStored as exc:
            self.counters["unavailable"] += 1
            raise NotTaken(LettersNotStored.__name__) from exc
