"""What a journey shard knows about its dedupe archive (archive.py): deterministic state
inside the workflow, carried over continue-as-new.

- Each generation the shard's memory drops is queued here, cut into objects of at most
  `MAX_KEYS_PER_OBJECT` keys, each numbered in the lane (a random id the shard draws when it
  starts archiving: a shard started afresh never reuses the key of an object a worker may
  hold in its cache). The shard writes the queue in its bookkeeping (a local activity) and
  delivers meanwhile; a queue that cannot be written (commercetools down) holds at most
  `max_pending_keys`, the oldest objects beyond that are given up.
- `covered_from` (our clock): every key the memory forgot that had been accepted since then
  is in the archive, as long as nothing is queued. It starts after the first object queued
  (what the memory forgot before the shard archived is not there) and moves on as objects
  expire or are given up.
- An object expires `retention` after the last acceptance it holds, and is deleted then by
  the same bookkeeping; one holding a key dated in the future (a sender's clock far ahead,
  see memory.py) is kept until `retention` after that date, since the memory lets such a
  key go only once its date has passed. Every hour the bookkeeping also sweeps objects of
  any lane expired an hour before (a lane whose shard was started afresh is nobody's).
- A delivery names the objects that may hold its forgotten signals (`view`): those with a
  key accepted no earlier than the oldest signal's date minus the clock-skew allowance, or
  a key dated at or after it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from ct_insider.journeys.archive import (
    MAX_KEYS_PER_OBJECT,
    ArchivedGeneration,
    ArchiveView,
    object_key,
    pack,
)
from ct_insider.journeys.memory import CLOCK_SKEW, DroppedGeneration


class ArchivedObject(BaseModel):
    sequence: int
    accepted_through: int  # unix seconds
    ahead_until: int = 0  # unix ms
    expires_at: int  # unix ms


class ArchiveLaneSnapshot(BaseModel):
    lane: str
    # Unix seconds: keys the memory let go of before the shard archived and kept while
    # dated in the future (memory.py) are dated before then.
    not_before: int = 0
    next_sequence: int = 0
    covered_from: int | None = None  # unix seconds; None: nothing archived yet
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
# Objects of any lane expired this long (ms) are swept, this often.
SWEEP_MARGIN = 3_600_000
SWEEP_EVERY = 3_600_000
_NOTHING = ArchiveWork()


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def new_lane(lane: str, *, ahead_until: int, now: datetime) -> ArchiveLaneSnapshot:
    """A lane starting now, in a shard whose memory keeps keys dated up to `ahead_until`
    (unix ms, SeenKeys.ahead_until) it may have dropped from their generations unarchived."""
    return ArchiveLaneSnapshot(
        lane=lane, not_before=ahead_until // 1000 + 1, next_sweep=_millis(now) + SWEEP_EVERY
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
        # Unix ms at which the next written object expires (a delivery asks every time).
        self._next_expiry = min((o.expires_at for o in snapshot.written), default=_NEVER)

    def snapshot(self) -> ArchiveLaneSnapshot:
        return self._state.model_copy(deep=True)

    def queue(self, dropped: DroppedGeneration) -> None:
        """SeenKeys.on_drop: a generation the memory let go of goes to the archive."""
        state = self._state
        if state.covered_from is None:
            # Keys forgotten before (in the same second, too) were not archived.
            state.covered_from = max(dropped.accepted_from + 1, state.not_before)
        for start in range(0, len(dropped.keys), MAX_KEYS_PER_OBJECT):
            state.queued.append(
                ArchivedGeneration(
                    lane=state.lane,
                    shard=self._shard,
                    sequence=state.next_sequence,
                    accepted_from=dropped.accepted_from,
                    accepted_through=dropped.accepted_through,
                    ahead_until=dropped.ahead_until,
                    expires_at=max(dropped.accepted_through * 1000 + 999, dropped.ahead_until)
                    + self._retention_ms,
                    keys=pack(dropped.keys[start : start + MAX_KEYS_PER_OBJECT]),
                )
            )
            state.next_sequence += 1
        while sum(g.key_count for g in state.queued) > self._max_pending_keys:
            lost = state.queued.pop(0)
            self._uncover_through(lost.accepted_through, lost.ahead_until)

    def _uncover_through(self, accepted_through: int, ahead_until: int) -> None:
        """Keys accepted up to then (or dated up to `ahead_until`) may be missing."""
        state = self._state
        after = max(accepted_through, -(-ahead_until // 1000)) + 1
        state.covered_from = max(state.covered_from or after, after)

    def work(self, now: datetime) -> ArchiveWork:
        """What the bookkeeping has to do now: write the queue, delete what expired."""
        state = self._state
        now_ms = _millis(now)
        if now_ms > self._next_expiry:
            keep = []
            for archived in state.written:
                if archived.expires_at < now_ms:
                    state.expired.append(archived.sequence)
                    self._uncover_through(archived.accepted_through, archived.ahead_until)
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
                    accepted_through=g.accepted_through,
                    ahead_until=g.ahead_until,
                    expires_at=g.expires_at,
                )
            )
            self._next_expiry = min(self._next_expiry, g.expires_at)
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
        earliest = int((oldest - CLOCK_SKEW).timestamp())
        dated = _millis(oldest)
        return ArchiveView(
            lane=state.lane,
            sequences=[
                archived.sequence
                for archived in state.written
                if archived.accepted_through >= earliest or archived.ahead_until >= dated
            ],
            covered_from=self.covers_from(),
        )
