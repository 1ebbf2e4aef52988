"""The bridge's dead letters: well-formed commercetools deliveries no journey can take.

commercetools hands its subscription deliveries to a queue (Pub/Sub push, EventBridge, ...)
that redelivers whatever is not answered 2xx until it gives up: a 4xx for a message that is
well-formed but unroutable would only be redelivered, then lost. So the bridge stores a
letter for it (path `realtime`, run `bridge`) and then answers 202:

- a letter about an order or a customer is a sync letter: `ct-insider dlq retry` reads the
  record again from commercetools and sends it the normal way (orders through the delivery
  ledger), once the cause is fixed (the order names its customer, the scope is granted);
- any other (e.g. a payment or a stock change commercetools refused to let the bridge read)
  names the notification; it cannot be re-driven: once the cause is fixed, the next delta
  sync of its entity carries the change, and the letter is purged.

Each kind of problem is logged once per process (a missing scope would otherwise log every
delivery); /stats counts every letter (`dead_lettered:<cause>`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from bridge.admission import RefusalCause, SignalRefusal
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.deadletters import DeadLetterDraft, DeadLetterStore
from ct_insider.journeys.envelopes import Notification
from ct_insider.journeys.signals import JourneySignal
from ct_insider.logging import get_logger
from ct_insider.resources import synced

log = get_logger(__name__)

RUN = "bridge"  # the letters' `run`: no workflow hit them
NOTIFICATION_ENTITY = "notification"
# The sync resource whose re-drive reads a record of this commercetools type again.
REDRIVEN_AS = {"order": "orders", "customer": "customers"}

Cause = RefusalCause | Literal["unreadable", "refused_by_commercetools"]


@dataclass(frozen=True)
class Refusal:
    cause: Cause
    letter: DeadLetterDraft
    kind: str = ""  # with the cause and entity: what is logged once


class LettersNotStored(Exception):
    """The store (commercetools) did not take the letters: the sender must deliver again."""


# How each kind of letter is recovered, once its cause is fixed (said in its reason).
SYNC_RECOVERY = "once fixed, `ct-insider dlq retry` reads it again and delivers it"
NOTIFICATION_RECOVERY = (
    "not re-drivable: once fixed, the next delta sync carries the change; then purge the letter"
)


def subject_letter(notification: Notification, reason: str) -> DeadLetterDraft:
    """The letter for a notification's resource: a sync letter for an order or a customer,
    else one naming the notification."""
    resource = REDRIVEN_AS.get(notification.resource_type)
    if resource is None:
        return DeadLetterDraft(
            entity=NOTIFICATION_ENTITY,
            record_id=notification.id,
            reasons=[
                f"{notification.type} on {notification.resource_type} "
                f"{notification.resource_id}: {reason} ({NOTIFICATION_RECOVERY})"
            ],
            run=RUN,
            path="realtime",
        )
    return _record_letter(resource, notification.resource_id, f"{notification.type}: {reason}")


def _record_letter(
    resource: str, record_id: str, reason: str, market: dict[str, str] | None = None
) -> DeadLetterDraft:
    entry = synced(resource)
    return DeadLetterDraft(
        entity=entry.dead_letter_entity,
        record_id=record_id,
        reasons=[f"{reason} ({SYNC_RECOVERY})"],
        run=RUN,
        market=market or {},
        path="realtime",
        # Live, like the journey it missed: journeys may fire when it is re-driven.
        redrive={"resource": entry.name, "id": record_id, "skip_hook": False},
    )


def signal_refusal(
    notification: Notification, signal: JourneySignal, refusal: SignalRefusal
) -> Refusal:
    """A commercetools signal the bridge does not admit (bridge/admission.py)."""
    resource = REDRIVEN_AS.get(signal.kind)
    if resource is None or signal.resource_id is None:
        letter = subject_letter(notification, f"its signal {refusal.reason}")
    else:
        reason = f"{signal.type}: {signal.kind} {signal.resource_id} {refusal.reason}"
        market = {k: v for k, v in signal.market.model_dump().items() if v}
        letter = _record_letter(resource, signal.resource_id, reason, market)
    return Refusal(refusal.cause, letter)


def refused_read(notification: Notification, resource: str, exc: CommercetoolsError) -> Refusal:
    """commercetools refused for good (4xx) a read of `resource` the notification needs."""
    code = exc.codes[0] if exc.codes else str(exc.status_code)
    reason = f"commercetools refused reading {resource} ({exc.status_code} {code}): {exc.message}"
    if exc.status_code == 403:
        reason += "; the bridge's API client lacks that scope: grant it (CTP_SCOPES)"
    return Refusal(
        "refused_by_commercetools",
        subject_letter(notification, reason),
        kind=f"{exc.status_code} {code} reading {resource}",
    )


class LetterBox:
    """Stores the bridge's letters, counts them, and logs each kind of problem once."""

    def __init__(self, store: DeadLetterStore, counters: Counter[str]) -> None:
        self._store = store
        self._counters = counters
        self._logged: set[str] = set()

    async def post(self, refusals: Sequence[Refusal]) -> None:
        try:
            await self._store.put([refusal.letter for refusal in refusals])
        except (CommercetoolsError, httpx.TransportError) as exc:
            log.warning("dead letters not stored, delivery not accepted", error=str(exc))
            raise LettersNotStored(str(exc)) from exc
        for refusal in refusals:
            self._counters[f"dead_lettered:{refusal.cause}"] += 1
            self._log_once(
                f"{refusal.cause}:{refusal.letter.entity}:{refusal.kind}",
                "delivery dead-lettered (logged once per kind; /stats counts them all)",
                cause=refusal.cause,
                entity=refusal.letter.entity,
                key=refusal.letter.key,
                reason=refusal.letter.reasons[0],
            )

    def _log_once(self, kind: str, event: str, **fields: str) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning(event, **fields)
