"""How identities are spread over journey shards, and how that changes while events flow.

A layout is (epoch, shard count, effective from). It lives in JourneyLayoutWorkflow's memo
(workflows/journey_layout.py); without that workflow it is `TEMPORAL_JOURNEY_SHARDS`. A
reshard is a change to epoch e+1, announced to every shard first and effective a lead time
later, so that every bridge serving traffic knows it before it takes effect (a bridge that
could not read the layout for `LAYOUT_STALE_SECONDS` answers 503).

An identity moves from its old owner a to its new owner b (`shard_of` under each count; the
digest is the one shard memory keys identities by, so a shard can tell which of the
identities it remembers move):

- b holds the signals of a moving identity, unaccepted, until a has handed off;
- a goes on delivering what it accepted; from `handoff_at` (effective + grace), once nothing
  of a moving identity is pending, it hands each shard identities can move to from it its
  dedupe keys (a key's digest names no identity: all of them) and the states and deletions
  of the identities moving there, in parts of at most `HANDOFF_MAX_BYTES`;
- b merges each part into its memory and, once a's parts are all in, accepts the held
  signals (the usual rules: duplicates, stale state, deletions) and delivers them in order;
- a bridge stores a window by the layout in effect when its commit starts (the signals of
  moved identities go to their new shard); a signal of a moved identity that still reaches a
  after its handoff (a window whose store took longer than the grace) is checked against
  a's memory and forwarded to b.

Both halves are idempotent: a part is known by (epoch, sender, index), a forwarded signal
by its dedupe key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ct_insider.journeys.memory import MemorySnapshot
from ct_insider.journeys.signals import owner_of, shard_of

MAX_SHARDS = 1024
# A bridge reads the layout this often, and refuses events (503) when it could not for this
# long. A change is published at least half its lead before it takes effect, so with a lead
# of at least MIN_LEAD_SECONDS every bridge that serves traffic has read it in time (with a
# second to spare for the layout workflow's task to be stored).
LAYOUT_REFRESH_SECONDS = 2.0
LAYOUT_STALE_SECONDS = 4.0
MIN_LEAD_SECONDS = 10.0
DEFAULT_LEAD_SECONDS = 30.0
# When a change takes effect, windows the bridges routed by the old layout may be being
# stored (a signal, milliseconds): old shards hand off this long after.
DEFAULT_GRACE_SECONDS = 0.5
# A handoff part is one signal: Temporal refuses payloads over 2 MB.
HANDOFF_MAX_BYTES = 1_000_000
LAYOUT_MEMO = "layout"


class Layout(BaseModel):
    model_config = ConfigDict(frozen=True)

    epoch: int = Field(default=0, ge=0)
    shards: int = Field(ge=1, le=MAX_SHARDS)
    effective_at: datetime | None = None  # None: from the start


class LayoutChange(BaseModel):
    """What every shard is told of a reshard."""

    model_config = ConfigDict(frozen=True)

    epoch: int = Field(ge=1)
    old_shards: int = Field(ge=1, le=MAX_SHARDS)
    new_shards: int = Field(ge=1, le=MAX_SHARDS)
    handoff_at: datetime

    def old_owner(self, routing_key: str) -> int:
        return shard_of(routing_key, self.old_shards)

    def new_owner(self, routing_key: str) -> int:
        return shard_of(routing_key, self.new_shards)

    def receivers(self, shard: int) -> list[int]:
        """The new shards `shard` hands off to: those an identity can move to from it. (An
        identity of digest h moves from h mod old to h mod new: such an h exists when the
        two are congruent modulo gcd(old, new).) A redelivery goes where its identity goes,
        so the keys a new owner needs are those of the shards that send to it."""
        if shard >= self.old_shards:
            return []
        step = math.gcd(self.old_shards, self.new_shards)
        return [new for new in range(shard % step, self.new_shards, step) if new != shard]

    def handing_off(self) -> list[int]:
        """The old shards that have something to hand off: the change is complete when
        each of them did."""
        return [shard for shard in range(self.old_shards) if self.receivers(shard)]

    def shards(self) -> int:
        """Every shard the change involves."""
        return max(self.old_shards, self.new_shards)

    def moves_to(self, receiver: int) -> Callable[[int], bool]:
        """Whether an identity (by digest) is `receiver`'s under the new layout."""
        return lambda identity: owner_of(identity, self.new_shards) == receiver


class LayoutStatus(BaseModel):
    """The layout as JourneyLayoutWorkflow keeps it (its memo): the bridges route by it."""

    current: Layout
    next: Layout | None = None
    change: LayoutChange | None = None  # of `next`, as the shards were told
    handed_off: list[int] = Field(default_factory=list)  # old shards done with `change`

    def in_effect(self, now: datetime) -> Layout:
        upcoming = self.next
        if upcoming is not None and upcoming.effective_at and now >= upcoming.effective_at:
            return upcoming
        return self.current


class HandedOff(BaseModel):
    """An old shard's report to JourneyLayoutWorkflow: it handed off its part of `epoch`."""

    epoch: int
    shard: int


def layout_workflow_id(task_queue: str) -> str:
    """Named after the journey task queue, like the shards."""
    return f"{task_queue}-layout"


class Placement(StrEnum):
    OWN = "own"  # accepted and delivered here
    HOLD = "hold"  # a moving identity whose old owner has not handed off yet
    FORWARD = "forward"  # a moved identity: checked here, then sent to its new owner


class HandoffPart(BaseModel):
    """One signal of a handoff: a part of the old owner's memory for a new owner."""

    change: LayoutChange
    sender: int
    index: int = Field(ge=0)
    count: int = Field(ge=1)
    memory: MemorySnapshot


class ShardLayout(BaseModel):
    """A shard's side of the latest reshard it was told of (carried across
    continue-as-new)."""

    change: LayoutChange | None = None
    handed_off: bool = False
    parts: dict[int, list[int]] = Field(default_factory=dict)  # sender -> indexes received
    complete: list[int] = Field(default_factory=list)  # senders whose parts are all in

    def learn(self, change: LayoutChange, shard: int) -> bool:
        """Take a change; True when it is a new one. The same change announced again with
        a later handoff (its first announcement was slow) postpones the handoff."""
        if self.change is not None and change.epoch <= self.change.epoch:
            if change.epoch == self.change.epoch and change.handoff_at > self.change.handoff_at:
                self.change = change
            return False
        self.change = change
        self.handed_off = not change.receivers(shard)
        self.parts = {}
        self.complete = []
        return True

    def place(self, shard: int, routing_key: str) -> tuple[Placement, int]:
        """Where a signal of this identity goes: (placement, its new owner)."""
        if self.change is None:
            return Placement.OWN, shard
        owner = self.change.new_owner(routing_key)
        if owner == shard:
            old = self.change.old_owner(routing_key)
            if old != shard and old not in self.complete:
                return Placement.HOLD, owner
            return Placement.OWN, owner
        # Routed here by the old layout: still ours until our handoff, then forwarded.
        return (Placement.FORWARD if self.handed_off else Placement.OWN), owner

    def moves(self, shard: int, routing_key: str) -> bool:
        return self.change is not None and self.change.new_owner(routing_key) != shard

    def handoff_due(self, now: datetime) -> bool:
        return self.change is not None and not self.handed_off and now >= self.change.handoff_at

    def until_handoff(self, now: datetime) -> timedelta | None:
        if self.change is None or self.handed_off:
            return None
        return max(timedelta(0), self.change.handoff_at - now)

    def receive(self, part: HandoffPart) -> bool:
        """Record a part; False when it is not of the current change or came before."""
        if self.change is None or part.change.epoch != self.change.epoch:
            return False
        received = self.parts.setdefault(part.sender, [])
        if part.index in received:
            return False
        received.append(part.index)
        if len(received) == part.count:
            self.complete.append(part.sender)
        return True
