"""Deliver a journey shard's batch to Insider: read what it needs, plan, send, account.

The contract with the shard (workflows/journey_shard.py), which keeps exactly-once:

1. Before any event is sent, everything that can fail without consequence happens: reading
   customers and orders, the ledger, the plan, dead letters for what cannot be mapped, and
   email identifier moves (repeating one changes nothing). An error here raises, and the
   delivery is simply run again.
2. Then the upserts (shared with other shards through the coalescer) and deletions. From
   the first upsert on, nothing raises: every user ends delivered, refused (dead letter),
   in doubt (the request may have been stored: settled by reading Insider, see settle.py)
   or unsent (requeued by the shard, which backs off). A request refused as a whole is
   tried user by user. A person's later signals wait while an earlier one is in doubt or
   unsent.
3. Bookkeeping (ledger entries of delivered order events, dead letters of refusals, removal
   of re-driven letters) is idempotent; when it fails it is handed back to the shard to
   finish, never a reason to send again.

A batch whose earlier delivery may have been cut short (the shard was rebuilt after a
worker died mid-delivery), or signals older than the shard's dedupe memory that its dedupe
archive does not cover (archive.py), are not sent blindly: their users with events go
straight to settlement.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.commercetools.models import Customer
from ct_insider.deadletters import DeadLetterDraft, DeadLetterStore
from ct_insider.erasure.plan import ErasureRequest
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.coalescer import UpsertCoalescer
from ct_insider.insider.errors import InsiderBadRequest, InsiderError
from ct_insider.insider.models import UpsertResult, User
from ct_insider.journeys.plan import (
    Deletion,
    DeliveryContext,
    DeliveryPlan,
    EmailChange,
    PlannedEvent,
    PlannedUser,
    Refusal,
    plan_delivery,
)
from ct_insider.journeys.signals import JourneySignal
from ct_insider.logging import get_logger
from ct_insider.mapping.config import MappingConfig
from ct_insider.replenishment.model import TimerChange
from ct_insider.sync.customers import CUSTOMER_EXPAND
from ct_insider.sync.history import is_historical
from ct_insider.sync.ledger import LedgerEntry
from ct_insider.sync.orders import ORDER_EXPAND, OrderEventSender, lookup_customer_uuids
from ct_insider.sync.reports import validation_reasons

log = get_logger(__name__)

# What became of a user a delivery tried to send: delivered or dead-lettered ("done"),
# maybe stored ("doubt": settled by reading Insider), surely not sent ("unsent": requeued).
UserState = Literal["done", "doubt", "unsent"]

# How long a shard waits before sending again after Insider did not take a request
# (429 beyond the client's own retries, connection refused, 401/403).
UNSENT_BACKOFF_SECONDS = 5.0

# Starts (or attaches to) the durable erasure of one person and returns its workflow id:
# erasing pages orders and carts and reads profiles at a paced rate, far too long for the
# shard's local delivery activity (activities/erasure.py provides it over Temporal).
ErasureStarter = Callable[[ErasureRequest], Awaitable[str]]


class DeliveryStats(BaseModel):
    events: int = 0  # events Insider acknowledged
    profiles: int = 0  # users whose attributes were upserted
    deleted: int = 0  # customers deleted or anonymized in Insider
    dead_lettered: int = 0
    nothing_to_send: int = 0
    in_doubt: int = 0  # users handed to settlement


class Bookkeeping(BaseModel):
    """What is recorded after a send; idempotent, so it can be finished later."""

    ledger: dict[str, list[str]] = Field(default_factory=dict)  # order id -> event keys
    letters: list[DeadLetterDraft] = Field(default_factory=list)
    redriven: list[str] = Field(default_factory=list)  # dead letters delivered now
    # Replenishment timer changes of the delivered order events (armed before the ledger
    # lists them; arming again changes nothing).
    timers: list[TimerChange] = Field(default_factory=list)

    def empty(self) -> bool:
        return not (self.ledger or self.letters or self.redriven or self.timers)


class DeliveryOutcome(BaseModel):
    stats: DeliveryStats = Field(default_factory=DeliveryStats)
    deleted_identities: list[str] = Field(default_factory=list)
    in_doubt: list[PlannedUser] = Field(default_factory=list)
    unsent: list[int] = Field(default_factory=list)  # batch indices for the shard to requeue
    retry_after: float | None = None
    unfinished: Bookkeeping | None = None


# What the shard sets on a signal: not part of it.
SHARD_FIELDS: set[str] = {
    "doubt",
    "forgotten",
    "redrive_of",
    "accepted_in",
    "accepted_by_update",
    "failures",
}


def dead_letter(
    lane: str, signal: JourneySignal, entity: str, record_id: str, reasons: list[str]
) -> DeadLetterDraft:
    market = {k: v for k, v in signal.market.model_dump().items() if v}
    return DeadLetterDraft(
        entity=entity,
        record_id=record_id,
        reasons=reasons,
        run=lane,
        market=market,
        redrive={"signal": signal.model_dump(mode="json", exclude=SHARD_FIELDS)},
    )


def signal_letter(lane: str, signal: JourneySignal, reasons: list[str]) -> DeadLetterDraft:
    if signal.kind == "storefront" and signal.storefront is not None:
        return dead_letter(lane, signal, "storefront-event", signal.storefront.event_id, reasons)
    if signal.kind == "order":
        return dead_letter(lane, signal, "order", signal.resource_id or signal.dedupe_key, reasons)
    if signal.kind == "cart":
        return dead_letter(lane, signal, "cart-event", signal.dedupe_key, reasons)
    record = signal.identity.customer_id or signal.resource_id or signal.dedupe_key
    return dead_letter(lane, signal, "customer", record, reasons)


def redriven_letters(signals: Sequence[JourneySignal], indices: Sequence[int]) -> list[str]:
    return [key for i in indices if (key := signals[i].redrive_of) is not None]


class JourneyDeliverer:
    def __init__(
        self,
        ct: CommercetoolsClient,
        insider: InsiderClient,
        coalescer: UpsertCoalescer,
        orders: OrderEventSender,
        letters: DeadLetterStore,
        mapping: MappingConfig,
        *,
        erasures: ErasureStarter,
    ) -> None:
        self._ct = ct
        self._insider = insider
        self._coalescer = coalescer
        self._orders = orders
        self._letters = letters
        self._mapping = mapping
        self._erasures = erasures

    # -- 1. reading and planning: may raise, nothing sent yet --------------------------

    async def _context(self, signals: Sequence[JourneySignal]) -> DeliveryContext:
        changed = list(
            dict.fromkeys(
                s.identity.customer_id or s.resource_id or ""
                for s in signals
                if s.kind == "customer"
            )
        )
        customers: dict[str, Customer] = {}
        customer_refusals: dict[str, list[str]] = {}
        if changed:
            for raw in await self._ct.find_in(
                "customers", changed, lambda q: f"id in ({q})", expand=CUSTOMER_EXPAND
            ):
                try:
                    customers[str(raw["id"])] = Customer.model_validate(raw)
                except ValidationError as exc:
                    customer_refusals[str(raw["id"])] = validation_reasons(exc)
        named = list(
            dict.fromkeys(
                s.identity.customer_id
                for s in signals
                if s.kind in ("storefront", "cart") and s.identity.customer_id
            )
        )
        uuids = await lookup_customer_uuids(self._ct, named, self._mapping)
        order_ids = list(
            dict.fromkeys(s.resource_id for s in signals if s.kind == "order" and s.resource_id)
        )
        prepared_orders = {}
        order_refusals: dict[str, list[str]] = {}
        if order_ids:
            records = await self._ct.find_in(
                "orders", order_ids, lambda q: f"id in ({q})", expand=ORDER_EXPAND
            )
            prepared = await self._orders.prepare(records)
            prepared_orders = prepared.orders
            order_refusals = {r.record_id: r.reasons for r in prepared.stats.rejections}
        return DeliveryContext(
            config=self._mapping,
            customers=customers,
            customer_uuids=uuids,
            orders=prepared_orders,
            order_refusals=order_refusals,
            customer_refusals=customer_refusals,
        )

    async def deliver(
        self,
        lane: str,
        signals: list[JourneySignal],
        *,
        interrupted: bool = False,
        skip: Collection[int] = (),
    ) -> DeliveryOutcome:
        """`interrupted`: an earlier execution of this delivery may have sent part of it;
        `skip`: the signals to leave out (duplicates the dedupe archive recognised)."""
        context = await self._context([s for i, s in enumerate(signals) if i not in skip])
        plan = plan_delivery(signals, context, skip)
        outcome = DeliveryOutcome()
        outcome.stats.nothing_to_send = len(plan.nothing_to_send)
        if plan.refused:
            await self._letters.put([self._refusal(lane, signals, r) for r in plan.refused])
            outcome.stats.dead_lettered += len(plan.refused)
            for refusal in plan.refused:
                log.warning(
                    "journey signal dead-lettered",
                    lane=lane,
                    entity=refusal.entity,
                    record_id=refusal.record_id,
                    reasons=refusal.reasons,
                )
        try:
            await self._move_emails(plan.email_changes)
        except InsiderError as exc:
            log.warning("email identifier move failed", lane=lane, error=str(exc))
            return self._all_unsent(outcome, plan, exc)

        # -- 2. sending: from here on nothing raises ------------------------------------
        book = Bookkeeping()
        entries = {oid: order.entry for oid, order in context.orders.items()}
        await self._send_waves(lane, signals, plan, interrupted, outcome, book)
        await self._finish(book, entries, outcome)
        return outcome

    def _refusal(
        self, lane: str, signals: list[JourneySignal], refusal: Refusal
    ) -> DeadLetterDraft:
        return dead_letter(
            lane, signals[refusal.signal], refusal.entity, refusal.record_id, refusal.reasons
        )

    def _all_unsent(
        self, outcome: DeliveryOutcome, plan: DeliveryPlan, exc: InsiderError
    ) -> DeliveryOutcome:
        outcome.unsent = sorted(
            {s for wave in plan.waves for user in wave for s in user.signals}
            | {d.signal for d in plan.deletions}
            | {c.signal for c in plan.email_changes}
        )
        outcome.retry_after = _backoff(exc)
        return outcome

    async def _move_emails(self, changes: list[EmailChange]) -> None:
        """An upsert never changes an identifier: move the email with the identity endpoint.
        The message names the old email; only a change notification without it makes us
        read the profile (CustomerEmailChanged without `oldEmail`)."""
        for change in changes:
            old = change.old
            if old is None:
                profile = await self._insider.read_profile({"uuid": change.uuid}, ["email"])
                old = (profile or {}).get("attributes", {}).get("email")
            if not old or old == change.new:
                continue
            try:
                await self._insider.update_identifier({"email": old}, {"email": change.new})
            except InsiderError as exc:
                if exc.retryable or exc.status_code in (401, 403):
                    raise
                # 404: Insider never had the old email; 400: the new one is someone's already.
                log.warning("email identifier not moved", error=str(exc))

    async def _send_waves(
        self,
        lane: str,
        signals: list[JourneySignal],
        plan: DeliveryPlan,
        interrupted: bool,
        outcome: DeliveryOutcome,
        book: Bookkeeping,
    ) -> None:
        held_back: set[str] = set()  # people with something in doubt or unsent: later waits
        stopped: InsiderError | None = None
        for wave in plan.waves:
            sendable: list[PlannedUser] = []
            for user in wave:
                if stopped is not None or user.identity in held_back:
                    outcome.unsent.extend(user.signals)
                    held_back.add(user.identity)
                elif user.events and (interrupted or any(signals[s].doubt for s in user.signals)):
                    outcome.in_doubt.append(user)
                    held_back.add(user.identity)
                else:
                    sendable.append(user)
            # Users whose events are all older than the live window (e.g. an OrderImported
            # of a migration) go in a request of their own that starts no journey.
            for group, skip_hook in self._by_hook(signals, sendable):
                if stopped is not None:
                    for user in group:
                        outcome.unsent.extend(user.signals)
                        held_back.add(user.identity)
                    continue
                states, failure = await self._upsert(
                    lane, signals, group, outcome, book, skip_hook=skip_hook
                )
                stopped = stopped or failure
                for user, state in zip(group, states, strict=True):
                    if state == "doubt":
                        outcome.in_doubt.append(user)
                    elif state == "unsent":
                        outcome.unsent.extend(user.signals)
                    if state != "done":
                        held_back.add(user.identity)
        if stopped is not None:
            outcome.retry_after = _backoff(stopped)
        await self._delete(lane, plan, held_back, outcome, book, signals)
        outcome.stats.in_doubt = len(outcome.in_doubt)
        outcome.unsent.sort()

    def historical(self, user: User) -> bool:
        """Whether every event of the upsert lies before the live window: it is sent with
        skip_hook, starting no journey (ct_insider/sync/history.py)."""
        window = timedelta(hours=self._mapping.orders.live_window_hours)
        return is_historical(user, datetime.now(UTC), window)

    def _by_hook(
        self, signals: list[JourneySignal], users: list[PlannedUser]
    ) -> list[tuple[list[PlannedUser], bool]]:
        """(users, skip_hook) groups: a user whose events all lie before the live window
        (only order events can: storefront events are this moment's) is sent with skip_hook."""
        live: list[PlannedUser] = []
        historical: list[PlannedUser] = []
        for user in users:
            has_orders = any(signals[s].kind == "order" for s in user.signals)
            if has_orders and self.historical(user.user()):
                historical.append(user)
            else:
                live.append(user)
        return [(group, hook) for group, hook in ((live, False), (historical, True)) if group]

    async def _upsert(
        self,
        lane: str,
        signals: list[JourneySignal],
        users: list[PlannedUser],
        outcome: DeliveryOutcome,
        book: Bookkeeping,
        *,
        skip_hook: bool = False,
    ) -> tuple[list[UserState], InsiderError | None]:
        """Send users and account for the delivered and refused ones; what became of each,
        and the error that stopped a request Insider surely did not take, if any. A request
        Insider refuses as a whole (400) is tried user by user, and a user it refuses alone
        is dead-lettered: one bad record does not hold up the rest."""
        try:
            result = await self._coalescer.upsert([u.user() for u in users], skip_hook=skip_hook)
        except InsiderBadRequest as exc:
            if exc.maybe_stored:
                return ["doubt"] * len(users), None
            if len(users) == 1:
                culprits = set(users[0].signals)
                self._dead_letter(lane, signals, culprits, [str(exc)], outcome, book)
                return ["done"], None
            states: list[UserState] = []
            stop: InsiderError | None = None
            for user in users:
                [state], failure = await self._upsert(
                    lane, signals, [user], outcome, book, skip_hook=skip_hook
                )
                states.append(state)
                stop = stop or failure
            return states, stop
        except InsiderError as exc:
            log.warning("journey upsert failed", lane=lane, error=str(exc))
            if exc.maybe_stored:
                return ["doubt"] * len(users), None
            return ["unsent"] * len(users), exc
        except Exception as exc:  # never raise once something may have been sent
            log.error("journey upsert failed unexpectedly", lane=lane, error=repr(exc))
            return ["doubt"] * len(users), None
        self._account(lane, signals, users, result, outcome, book)
        return ["done"] * len(users), None

    def _dead_letter(
        self,
        lane: str,
        signals: list[JourneySignal],
        culprits: set[int],
        reasons: list[str],
        outcome: DeliveryOutcome,
        book: Bookkeeping,
    ) -> None:
        for signal in sorted(culprits):
            book.letters.append(signal_letter(lane, signals[signal], reasons))
            log.warning(
                "journey signal refused by Insider",
                lane=lane,
                signal=signals[signal].dedupe_key,
                reasons=reasons,
            )
        outcome.stats.dead_lettered += len(culprits)

    def _account(
        self,
        lane: str,
        signals: list[JourneySignal],
        users: list[PlannedUser],
        result: UpsertResult,
        outcome: DeliveryOutcome,
        book: Bookkeeping,
    ) -> None:
        refused = {failure.index: failure for failure in result.failures}
        for index, user in enumerate(users):
            failure = refused.get(index)
            if failure is None:
                delivered(user, signals, outcome, book)
                continue
            positions = failure.event_positions()
            culprits = (
                set(user.signals)
                if positions is None
                else {user.events[p].signal for p in positions if p < len(user.events)}
            )
            self._dead_letter(lane, signals, culprits, failure.reasons, outcome, book)
            rest = [e for e in user.events if e.signal not in culprits]
            if rest:
                # Refused for one event, the rest may or may not have been stored: settled.
                outcome.in_doubt.append(
                    user.model_copy(
                        update={
                            "events": rest,
                            "signals": [s for s in user.signals if s not in culprits],
                        }
                    )
                )

    async def _delete(
        self,
        lane: str,
        plan: DeliveryPlan,
        held_back: set[str],
        outcome: DeliveryOutcome,
        book: Bookkeeping,
        signals: list[JourneySignal],
    ) -> None:
        """Deletions go last; one whose person still has something unsettled waits (it is
        requeued and goes after the settlement)."""
        for deletion in plan.deletions:
            if deletion.identity in held_back or outcome.retry_after is not None:
                outcome.unsent.append(deletion.signal)
                continue
            try:
                await self._forget(deletion)
            except Exception as exc:  # e.g. Temporal unreachable: started by a later attempt
                log.warning("customer erasure not started", error=repr(exc))
                outcome.unsent.append(deletion.signal)
                outcome.retry_after = UNSENT_BACKOFF_SECONDS
                continue
            if self._mapping.customer_deletion != "keep":
                outcome.stats.deleted += 1
            outcome.deleted_identities.append(deletion.identity)
            book.redriven.extend(redriven_letters(signals, [deletion.signal]))

    async def _forget(self, deletion: Deletion) -> None:
        """Start the erasure of the deleted customer (ErasureWorkflow `erase-<customer id>`,
        ct_insider/erasure/): every identity of them in Insider and the dead letters about
        them, the same as `ct-insider erase`. Only the start happens here; a repeated
        delivery attaches to the running erasure or runs it again, which is idempotent.
        `deletion.uuid`: resolved by the plan (from the message's user-provided identifiers
        when `uuid_source` is not the id)."""
        policy = self._mapping.customer_deletion
        if policy == "keep":
            log.info("customer deletion kept in Insider", policy=policy)
            return
        request = ErasureRequest(customer_id=deletion.customer_id, uuid=deletion.uuid or None)
        workflow_id = await self._erasures(request)
        log.info("customer erasure started", workflow_id=workflow_id)

    # -- 3. bookkeeping: idempotent, handed back to the shard when it fails -------------

    async def _finish(
        self, book: Bookkeeping, entries: dict[str, LedgerEntry], outcome: DeliveryOutcome
    ) -> None:
        if book.empty():
            return
        try:
            await self.finish(book, entries)
        except Exception as exc:  # the shard finishes it later
            log.warning("delivery bookkeeping postponed", error=repr(exc))
            outcome.unfinished = book

    async def finish(
        self, book: Bookkeeping, entries: dict[str, LedgerEntry] | None = None
    ) -> None:
        if book.timers:
            await self._orders.arm(book.timers)
        if book.ledger:
            delivered = {oid: set(keys) for oid, keys in book.ledger.items()}
            await self._orders.ledger.record(entries or {}, delivered)
        if book.letters:
            await self._letters.put(book.letters)
        if book.redriven:
            await self._letters.delete(book.redriven)


def delivered(
    user: PlannedUser,
    signals: Sequence[JourneySignal],
    outcome: DeliveryOutcome,
    book: Bookkeeping,
) -> None:
    """Account for a user Insider acknowledged."""
    outcome.stats.events += len(user.events)
    if user.attributes is not None:
        outcome.stats.profiles += 1
    record_in_ledger(user.events, book)
    book.redriven.extend(redriven_letters(signals, user.signals))


def record_in_ledger(events: Sequence[PlannedEvent], book: Bookkeeping) -> None:
    """The order events among `events` are in Insider: their keys go to the ledger."""
    keys: dict[str, list[str]] = defaultdict(list)
    for planned in events:
        if planned.order_id and planned.ledger_key:
            keys[planned.order_id].append(planned.ledger_key)
            book.timers.extend(planned.timer_changes)
    for order_id, order_keys in keys.items():
        book.ledger.setdefault(order_id, []).extend(order_keys)


def _backoff(exc: InsiderError | CommercetoolsError) -> float:
    retry_after: Any = getattr(exc, "retry_after", None)
    return max(UNSENT_BACKOFF_SECONDS, float(retry_after or 0))
