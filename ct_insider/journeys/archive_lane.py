"""What a journey shard knows about its dedupe archive (archive.py): deterministic state
inside the workflow, carried over continue-as-new.

- Each generation the shard's memory drops is queued here, cut into objects of at most
  `MAX_KEYS_PER_OBJECT` keys, each numbered in the lane (a random id the shard draws when it
  starts archiving: a shard started afresh never reuses the key of an object a worker may
  hold in its cache). The shard writes the queue in its bookkeeping (a local activity) and
  delivers meanwhile; a queue that cannot be written (commercetools down) holds at most a
  quarter of the memory's keys, in at most `max_pending_bytes` of JSON; the oldest objects
  beyond that are given up.
- `covered_from` (our clock, ms): every key the memory forgot that it had received since
  then is in the archive, as long as nothing is queued. It starts when the lane starts
  (what the memory forgot before is not there, nor what a shard of an earlier start took)
  and moves on as objects expire or are given up.
- An object expires `retention` after the receipt of the newest key it holds, and is
  deleted then by the same bookkeeping (keys dated ahead of our clock join a generation
  only when receipt times reach their date, memory.py: receipt times bound them all).
  Every hour the bookkeeping also sweeps objects of any lane expired an hour before (a
  lane whose shard was started afresh is nobody's).
- A delivery names the objects that may hold its forgotten signals (`view`): those with a
  key received no earlier than the oldest signal's date minus the clock-skew allowance.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from pydantic_core import to_json

from ct_insider.journeys.archive import (
    MAX_KEYS_PER_OBJECT,
    ArchivedGeneration,
    ArchiveView,
    object_key,
    pack,
)
from ct_insider.journeys.memory import CLOCK_SKEW_ALLOWANCE, DroppedGeneration


class ArchivedObject(BaseModel):
    sequence: int
    received_through: int  # unix ms
    expires_at: int  # unix ms


class ArchiveLaneSnapshot(BaseModel):
    lane: str
    next_sequence: int = 0
    covered_from: int  # unix ms
    next_sweep: int = 0  # unix ms
    queued: list[ArchivedGeneration] = Field(default_factory=list)
    written: list[ArchivedObject] = Field(default_factory=list)
    expired: list[int] = Field(default_factory=list)  # sequences to delete


class ArchiveWork(BaseModel):
    """One bookkeeping step: objects to write, objects to delete."""

    writes: list[ArchivedGeneration] = Field(default_factory=list)
    deletes: list[str] = Field(default_factory=list)  # object keys
    sweep_before: int | None = None  # unix ms: delete any lane's objects expired before

    def empty(self) -> bool:
        return not (self.writes or self.deletes or self.sweep_before)


_NEVER = 2**62
# What the lane carries over continue-as-new is bounded by construction (max_lane_bytes):
# objects written and not yet expired, at most this many (the oldest beyond are given up:
# no longer looked up, and left to the sweep) - at 1,500 signals/s and the default memory,
# a generation drops every 2.5 s: ~21 minutes of them (at 375/s, 85);
MAX_WRITTEN_OBJECTS = 512
# expired objects still to delete, at most (beyond, the sweep deletes them);
MAX_EXPIRED_OBJECTS = 256
# queued objects' JSON besides their keys (lane, shard id, numbers), counted in the queue's
# bound; and the lane's own fields.
QUEUED_FRAMING_BYTES = 8_192
LANE_FRAMING_BYTES = 512
# (Sequences below 10^12, times in ms below 10^15 - the year 33658: retention is at most
# a week, ShardSettings.)
_WRITTEN_OBJECT_BYTES = (
    len(to_json({"sequence": 10**12, "received_through": 10**15, "expires_at": 10**15})) + 1
)
_EXPIRED_BYTES = len(str(10**12)) + 1
# Objects of any lane expired this long (ms) are swept, this often.
SWEEP_MARGIN = 3_600_000
SWEEP_EVERY = 3_600_000
_NOTHING = ArchiveWork()


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def max_pending_bytes(max_pending_keys: int) -> int:
    """The queue of objects to write, at most (JSON bytes), when it holds at most this many
    keys (a quarter of the memory's): their base64, and the objects' framing."""
    return 4 * -(-8 * max_pending_keys // 3) + QUEUED_FRAMING_BYTES


def max_pending_keys(seen_capacity: int) -> int:
    return seen_capacity // 4


def max_lane_bytes(seen_capacity: int) -> int:
    """The most JSON a lane's snapshot takes, for a memory of this capacity."""
    return (
        LANE_FRAMING_BYTES
        + max_pending_bytes(max_pending_keys(seen_capacity))
        + MAX_WRITTEN_OBJECTS * _WRITTEN_OBJECT_BYTES
        + MAX_EXPIRED_OBJECTS * _EXPIRED_BYTES
    )


def new_lane(lane: str, now: datetime) -> ArchiveLaneSnapshot:
    """A lane starting now: it covers what is received from now on (what the memory forgot
    before is not archived; and a signal dated before then may repeat one a shard of an
    earlier start took, which no archive of this one holds)."""
    return ArchiveLaneSnapshot(
        lane=lane, covered_from=_millis(now) + 1, next_sweep=_millis(now) + SWEEP_EVERY
    )


class ArchiveLane:
    def __init__(
        self,
        snapshot: ArchiveLaneSnapshot,
        *,
        shard: str,
        retention: timedelta,
        max_pending_keys: int,
    ) -> None:
        self._state = snapshot
        self._shard = shard
        self._retention_ms = int(retention / timedelta(milliseconds=1))
        self._max_pending_keys = max_pending_keys
        self._max_pending_bytes = max_pending_bytes(max_pending_keys)
        # Unix ms at which the next written object expires (a delivery asks every time).
        self._next_expiry = min((o.expires_at for o in snapshot.written), default=_NEVER)

    def snapshot(self) -> ArchiveLaneSnapshot:
        return self._state.model_copy(deep=True)

    def carried_bytes(self) -> int:
        """What its snapshot takes in the carry (JSON), at most `max_lane_bytes`."""
        return len(to_json(self._state))

    def queue(self, dropped: DroppedGeneration) -> None:
        """SeenKeys.on_drop: a generation the memory let go of goes to the archive."""
        state = self._state
        for start in range(0, len(dropped.keys), MAX_KEYS_PER_OBJECT):
            state.queued.append(
                ArchivedGeneration(
                    lane=state.lane,
                    shard=self._shard,
                    sequence=state.next_sequence,
                    received_through=dropped.received_through,
                    expires_at=dropped.received_through + self._retention_ms,
                    keys=pack(dropped.keys[start : start + MAX_KEYS_PER_OBJECT]),
                )
            )
            state.next_sequence += 1
        while (
            sum(g.key_count for g in state.queued) > self._max_pending_keys
            or sum(len(to_json(g)) + 1 for g in state.queued) > self._max_pending_bytes
        ):
            lost = state.queued.pop(0)
            self._uncover_through(lost.received_through)

    def _uncover_through(self, received_through: int) -> None:
        """Keys received up to then may be missing."""
        self._state.covered_from = max(self._state.covered_from, received_through + 1)

    def work(self, now: datetime) -> ArchiveWork:
        """What the bookkeeping has to do now: write the queue, delete what expired."""
        state = self._state
        now_ms = _millis(now)
        if now_ms > self._next_expiry:
            keep = []
            for archived in state.written:
                if archived.expires_at < now_ms:
                    state.expired = [*state.expired, archived.sequence][-MAX_EXPIRED_OBJECTS:]
                    self._uncover_through(archived.received_through)
                else:
                    keep.append(archived)
            state.written = keep
            self._next_expiry = min((o.expires_at for o in keep), default=_NEVER)
        sweep = now_ms >= state.next_sweep
        if not (state.queued or state.expired or sweep):
            return _NOTHING
        return ArchiveWork(
            writes=list(state.queued),
            deletes=[object_key(state.lane, sequence) for sequence in state.expired],
            sweep_before=now_ms - SWEEP_MARGIN if sweep else None,
        )

    def done(self, work: ArchiveWork) -> None:
        state = self._state
        written = {g.sequence for g in work.writes}
        state.queued = [g for g in state.queued if g.sequence not in written]
        for g in work.writes:
            state.written.append(
                ArchivedObject(
                    sequence=g.sequence,
                    received_through=g.received_through,
                    expires_at=g.expires_at,
                )
            )
            self._next_expiry = min(self._next_expiry, g.expires_at)
        while len(state.written) > MAX_WRITTEN_OBJECTS:
            self._uncover_through(state.written.pop(0).received_through)
        if work.sweep_before is not None:
            state.next_sweep = work.sweep_before + SWEEP_MARGIN + SWEEP_EVERY
        deleted = set(work.deletes)
        state.expired = [s for s in state.expired if object_key(state.lane, s) not in deleted]

    def covers_from(self) -> int | None:
        state = self._state
        return None if state.queued else state.covered_from

    def view(self, oldest: datetime) -> ArchiveView:
        """What a delivery whose oldest forgotten signal is dated `oldest` looks up."""
        state = self._state
        earliest = _millis(oldest - CLOCK_SKEW_ALLOWANCE)
        return ArchiveView(
            lane=state.lane,
            sequences=[
                archived.sequence
                for archived in state.written
                if archived.received_through >= earliest
            ],
            covered_from=self.covers_from(),
        )
