"""The rules a journey shard applies to each signal: pure functions over its memory.

Accepting (as signals arrive, in arrival order):
- a signal whose dedupe key (event id, message id, `<resource>@<version>`) was seen is a
  duplicate; a re-drive from the dead-letter store is known by its letter and version;
- a signal of a customer whose deletion was delivered is dropped: deletion is the last word;
- a customer state change (any Customer* message but CustomerCreated, EmailChanged and
  Deleted) at or below a version already accepted is stale: delivery reads the customer's
  current state anyway;
- a signal that happened before what the dedupe memory still reaches is accepted, marked
  `forgotten`: delivery looks it up in the dedupe archive, and asks Insider whether it
  already holds its events when the archive does not cover it.

Batching (when the shard delivers): pending signals in order of occurrence (time, then the
commercetools sequence number), at most `max_batch`; each signal carries the market it
happened in, gaps filled from what its identity's earlier signals said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ct_insider.journeys.memory import ShardMemory, digest
from ct_insider.journeys.signals import JourneySignal

DELETION_TYPES = frozenset({"CustomerDeleted", "ResourceDeleted"})
# Customer messages that do more than say "the customer changed" (which the delivery answers
# by re-reading the customer): never dropped as stale.
EVENTFUL_CUSTOMER_TYPES = frozenset({"CustomerCreated", "CustomerEmailChanged"}) | DELETION_TYPES


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    STALE = "stale"
    DELETED = "deleted"  # the customer's deletion was delivered before


def is_deletion(signal: JourneySignal) -> bool:
    return signal.kind == "customer" and signal.type in DELETION_TYPES


def accept(memory: ShardMemory, signal: JourneySignal, now: datetime) -> Verdict:
    """Whether the shard takes `signal`; marks one it may have forgotten."""
    key = digest(signal.intake_key())
    if key in memory.seen:
        return Verdict.DUPLICATE
    memory.seen.add(key, signal.occurred_at, now)
    routing = signal.routing()
    identity = memory.identities.touch(routing, now)
    if memory.identities.is_deleted(routing):
        return Verdict.DELETED
    if (
        signal.kind == "customer"
        and signal.type not in EVENTFUL_CUSTOMER_TYPES
        and signal.resource_version is not None
    ):
        if signal.resource_version <= identity.version:
            return Verdict.STALE
        identity.version = signal.resource_version
    signal.forgotten = signal.redrive_of is None and memory.seen.may_have_forgotten(
        signal.occurred_at
    )
    return Verdict.ACCEPTED


@dataclass(frozen=True)
class Batch:
    signals: list[JourneySignal]
    rest: list[JourneySignal]  # still pending, in order
    deleted: list[JourneySignal]  # dropped: their customer's deletion was delivered


def take_batch(
    memory: ShardMemory, pending: list[JourneySignal], max_batch: int, now: datetime
) -> Batch:
    ordered = sorted(pending, key=JourneySignal.order_key)
    batch: list[JourneySignal] = []
    rest: list[JourneySignal] = []
    deleted: list[JourneySignal] = []
    for signal in ordered:
        if memory.identities.is_deleted(signal.routing()):
            deleted.append(signal)
        elif len(batch) < max_batch:
            batch.append(signal)
        else:
            rest.append(signal)
    for signal in batch:
        # The market an event happened in: its own fields, else its identity's last known.
        state = memory.identities.touch(signal.routing(), now)
        signal.market = memory.identities.set_market(state, signal.market.filled_from(state.market))
    return Batch(batch, rest, deleted)


def mark_deleted(memory: ShardMemory, routing_keys: list[str], now: datetime) -> None:
    """After a deletion was delivered: nothing more is delivered for these identities."""
    for key in routing_keys:
        memory.identities.mark_deleted(key, now)
