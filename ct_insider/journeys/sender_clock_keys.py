"""The dedupe memory of shard runs begun before patch `shard-memory-on-our-clock`.

Those runs measured how far their memory reached by the times senders stated: a clock
running minutes ahead moved `forgotten_through` into the future and made every ordinary
signal doubtful (issue 16). A run keeps the rules it began with, so that replaying its
history gives the verdicts it gave (a batch's recorded outcome names its signals by
position); the run after it reads this snapshot with memory.SeenKeys, no later than the
moment it loads it. Kept as it was; remove it, and deprecate the patch, once no run begun
before the patch remains (a run continues-as-new after ~6,000 signals or 5,000 history
events: a quiet shard's run may take days).
"""

from __future__ import annotations

import base64
import heapq
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ct_insider.journeys.memory import (
    GENERATION_SECONDS,
    GENERATIONS,
    Forgotten,
    GenerationSnapshot,
    MemorySnapshot,
    _epoch,
    _millis,
)
from ct_insider.journeys.signals import JourneySignal

CLOCK_SKEW = timedelta(minutes=10)
# Pending signals those runs carried over continue-as-new, at most (JSON characters).
CARRY_MAX_BYTES = 512_000


def carryable(pending: list[JourneySignal]) -> bool:
    budget = CARRY_MAX_BYTES
    for signal in pending:
        budget -= len(signal.model_dump_json())
        if budget < 0:
            return False
    return True


@dataclass
class _Generation:
    opened_at: int
    latest: int = 0
    keys: set[int] = field(default_factory=set)
    ahead: dict[int, int] = field(default_factory=dict)  # keys dated beyond the skew


class SenderClockSeenKeys:
    def __init__(self, capacity: int, snapshot: MemorySnapshot | None = None) -> None:
        self._capacity = capacity
        self._generation_size = max(1, capacity // GENERATIONS)
        self._generations: deque[_Generation] = deque()
        self._size = 0
        self.forgotten_through: int | None = None
        # Keys of dropped generations whose signals are dated in the future: kept until
        # that time has passed (a redelivery carries the same date).
        self._ahead: dict[int, int] = {}
        self._ahead_due: list[tuple[int, int]] = []  # heap of (stated time, key)
        self._ahead_capacity = max(1, capacity // 4)
        if snapshot is not None:
            self.forgotten_through = snapshot.forgotten_through
            for key, at in snapshot.ahead.items():
                self._keep_ahead(int(key, 16), at)
            for saved in snapshot.generations:
                raw = base64.b64decode(saved.keys)
                keys = {int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)}
                ahead = {int(key, 16): at for key, at in saved.ahead.items()}
                self._generations.append(_Generation(saved.opened_at, saved.latest, keys, ahead))
                self._size += len(keys)

    def __contains__(self, key: int) -> bool:
        return key in self._ahead or any(key in g.keys for g in self._generations)

    def __len__(self) -> int:
        return self._size

    def add(self, key: int, occurred_at: datetime, now: datetime) -> None:
        second = _epoch(now)
        newest = self._generations[-1] if self._generations else None
        if (
            newest is None
            or len(newest.keys) >= self._generation_size
            or second - newest.opened_at >= GENERATION_SECONDS
        ):
            newest = _Generation(second)
            self._generations.append(newest)
            if len(self._generations) > 2 * GENERATIONS:
                self._merge_oldest()
        if key not in newest.keys:
            newest.keys.add(key)
            self._size += 1
        if occurred_at > now + CLOCK_SKEW:
            newest.ahead[key] = _millis(occurred_at)
        else:
            newest.latest = max(newest.latest, _millis(occurred_at))
        while self._size > self._capacity and len(self._generations) > 1:
            dropped = self._generations.popleft()
            self._size -= len(dropped.keys)
            self.forgotten_through = max(self.forgotten_through or 0, dropped.latest)
            for ahead_key, at in dropped.ahead.items():
                self._keep_ahead(ahead_key, at)
        # A future-dated key whose time has come is forgotten like any other: its time is
        # in the past now, so `forgotten_through` covers it without making later ones
        # doubtful. (Beyond the capacity the soonest goes early: conservative.)
        now_ms = _millis(now)
        while self._ahead_due and (
            self._ahead_due[0][0] <= now_ms or len(self._ahead) > self._ahead_capacity
        ):
            at, due_key = heapq.heappop(self._ahead_due)
            if self._ahead.pop(due_key, None) is not None:
                self.forgotten_through = max(self.forgotten_through or 0, at)

    def _merge_oldest(self) -> None:
        """A quiet shard opens a generation a minute: keep their number bounded by merging
        the two oldest (what they remember and when it happened stay the same)."""
        older = self._generations.popleft()
        newer = self._generations[0]
        newer.opened_at = older.opened_at
        newer.latest = max(older.latest, newer.latest)
        self._size -= len(older.keys & newer.keys)
        newer.keys |= older.keys
        newer.ahead.update(older.ahead)

    def _keep_ahead(self, key: int, at: int) -> None:
        self._ahead[key] = at
        heapq.heappush(self._ahead_due, (at, key))

    def may_have_forgotten(self, occurred_at: datetime) -> bool:
        """Whether an earlier delivery of a signal that happened then may have been
        forgotten: it happened no later than the latest forgotten one."""
        if self.forgotten_through is None:
            return False
        return _millis(occurred_at) <= self.forgotten_through

    def remember(
        self, key: int, occurred_at: datetime, received_at: datetime | None, now: datetime
    ) -> Forgotten:
        self.add(key, occurred_at, now)
        return Forgotten.RECEIVED if self.may_have_forgotten(occurred_at) else Forgotten.NO

    def snapshot(self) -> MemorySnapshot:
        return MemorySnapshot(
            generations=[
                GenerationSnapshot(
                    opened_at=generation.opened_at,
                    latest=generation.latest,
                    ahead={f"{key:016x}": at for key, at in generation.ahead.items()},
                    keys=base64.b64encode(
                        b"".join(key.to_bytes(8, "big") for key in generation.keys)
                    ).decode(),
                )
                for generation in self._generations
            ],
            forgotten_through=self.forgotten_through,
            ahead={f"{key:016x}": at for key, at in self._ahead.items()},
        )
