"""The rules a journey shard applies to each signal: pure functions over its memory.

Accepting (as signals arrive, in arrival order):
- a signal whose dedupe key (event id, message id, `<resource>@<version>`) was seen is a
  duplicate; a re-drive from the dead-letter store is known by its letter and version;
- a signal of a customer whose deletion was delivered is dropped: deletion is the last word;
- a customer state change (any Customer* message but CustomerCreated, EmailChanged and
  Deleted) at or below a version already accepted is stale: delivery reads the customer's
  current state anyway;
- a signal dated before what the dedupe memory still reaches (measured on our clock, see
  memory.py) is accepted, marked `forgotten`: delivery looks it up in the shard's dedupe
  archive, and asks Insider whether it already holds its events when the archive does not
  cover it; one that may repeat a key kept apart for its date and dropped early (never
  archived) is marked `doubt` at once.

Batching (when the shard delivers): pending signals in order of occurrence (time, then the
commercetools sequence number), at most `max_batch`; each signal carries the market it
happened in, gaps filled from what its identity's earlier signals said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ct_insider.journeys.memory import Forgotten, ShardMemory
from ct_insider.journeys.signals import JourneySignal, digest, encoded_size

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
    forgotten = memory.seen.remember(key, signal.occurred_at, signal.received_at, now)
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
    signal.forgotten = signal.redrive_of is None and forgotten is Forgotten.RECEIVED
    signal.doubt = signal.redrive_of is None and forgotten is Forgotten.AHEAD
    return Verdict.ACCEPTED


@dataclass(frozen=True)
class Batch:
    signals: list[JourneySignal]
    rest: list[JourneySignal]  # still pending, in order
    deleted: list[JourneySignal]  # dropped: their customer's deletion was delivered


def take_batch(
    memory: ShardMemory,
    pending: list[JourneySignal],
    max_batch: int,
    now: datetime,
    max_bytes: int,
) -> Batch:
    """The next batch: at most `max_batch` signals and `max_bytes` of them (as the shard's
    payloads carry them: the batch is a local activity's input, and its doubtful users travel
    in its result and a settlement's input), at least one."""
    ordered = sorted(pending, key=JourneySignal.order_key)
    batch: list[JourneySignal] = []
    rest: list[JourneySignal] = []
    deleted: list[JourneySignal] = []
    room = max_bytes
    for signal in ordered:
        if memory.identities.is_deleted(signal.routing()):
            deleted.append(signal)
            continue
        if rest or len(batch) >= max_batch:
            rest.append(signal)
            continue
        size = encoded_size(signal)
        if batch and size > room:
            rest.append(signal)  # and everything after it: the batch stays in order
            continue
        batch.append(signal)
        room -= size
    for signal in batch:
        # The market an event happened in: its own fields, else its identity's last known.
        state = memory.identities.touch(signal.routing(), now)
        signal.market = memory.identities.set_market(state, signal.market.filled_from(state.market))
    return Batch(batch, rest, deleted)


def mark_deleted(memory: ShardMemory, routing_keys: list[str], now: datetime) -> None:
    """After a deletion was delivered: nothing more is delivered for these identities."""
    for key in routing_keys:
        memory.identities.mark_deleted(key, now)
