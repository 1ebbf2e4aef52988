"""What a journey shard remembers, within fixed bounds, across continue-as-new.

A shard serves many thousands of identities, most of them visitors seen once. It keeps:

- the dedupe keys of the signals it accepted, as 64-bit digests in generations (one per
  minute, or per eighth of the capacity); when the memory is full the oldest generation
  goes, and `forgotten_through` records the latest moment at which a forgotten signal
  happened. A redelivery carries its original's occurrence time, so a signal that happened
  later than that cannot repeat a forgotten one; one that happened at or before it may,
  and is delivered only after asking Insider. A signal dated later than its arrival plus
  a clock-skew allowance (a sender whose clock runs fast) would push that moment into the
  future and make every later signal doubtful; instead its key outlives its generation
  (`ahead`) until its stated time has passed, and only then counts as forgotten.
- per identity, least recently seen first: the market it was last seen in (carried onto
  later signals that lack one), the last customer version applied (older state changes are
  stale); and, apart (for 30 days, the 50,000 latest), the customers whose deletion was
  delivered: nothing more is delivered for them.

A generation the memory drops is handed to `SeenKeys.on_drop` when one listens (the shard's
dedupe archive, ct_insider/journeys/archive_lane.py, writes it outside the workflow).

The snapshot carried into the next run packs both into bytes (8 bytes per key, 19 per
identity, markets interned): 20,000 keys and 20,000 identities are ~0.7 MB of payload,
well under Temporal's 2 MB per payload.

A 64-bit digest makes two different keys collide with probability ~n/2^64 per new key
(n keys remembered): for 30,000 remembered keys, once in ~6e14 signals.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from ct_insider.journeys.signals import Market

# How far a sender's clock may run ahead of ours when deciding whether a key could have
# been forgotten.
CLOCK_SKEW = timedelta(minutes=10)
GENERATIONS = 8
GENERATION_SECONDS = 60
_IDENTITY = struct.Struct(">QHIiB")  # digest, market index, last seen, version, flags
_DELETION = struct.Struct(">QI")  # digest, deleted at
_NO_MARKET = 0xFFFF
# Deleted customers are remembered apart from the identities (which visitors' traffic turns
# over in minutes): this many, for this long.
DELETED_CAPACITY = 50_000
DELETED_DAYS = 30


def digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class GenerationSnapshot(BaseModel):
    opened_at: int  # unix seconds
    latest: int  # unix milliseconds: the latest occurrence among its signals (sane clocks)
    keys: str  # base64 of 8-byte big-endian digests
    ahead: dict[str, int] = Field(default_factory=dict)  # digest (hex) -> stated time (ms)


class MemorySnapshot(BaseModel):
    generations: list[GenerationSnapshot] = Field(default_factory=list)
    forgotten_through: int | None = None  # unix milliseconds
    ahead: dict[str, int] = Field(default_factory=dict)  # digest (hex) -> stated time (ms)
    markets: list[Market] = Field(default_factory=list)
    identities: str = ""  # base64 of packed identity records, least recently seen first
    deleted: str = ""  # base64 of packed (digest, deleted at) of deleted customers


@dataclass
class _Generation:
    opened_at: int
    latest: int = 0
    keys: set[int] = field(default_factory=set)
    ahead: dict[int, int] = field(default_factory=dict)  # keys dated beyond the skew


@dataclass(frozen=True)
class DroppedGeneration:
    """A generation the memory let go of, for the dedupe archive: its keys and when they
    were accepted, on our clock (never the senders')."""

    keys: list[int]  # digests, sorted
    accepted_from: int  # unix seconds: no key of it was accepted earlier
    accepted_through: int  # unix seconds: none later
    ahead_until: int  # unix milliseconds: the latest stated time of its `ahead` keys (0: none)


class SeenKeys:
    def __init__(self, capacity: int, snapshot: MemorySnapshot | None = None) -> None:
        # Told of every generation dropped for capacity, when set.
        self.on_drop: Callable[[DroppedGeneration], None] | None = None
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
            if self.on_drop is not None:
                # Accepted before the next generation opened (or in that very second).
                self.on_drop(
                    DroppedGeneration(
                        keys=sorted(dropped.keys),
                        accepted_from=dropped.opened_at,
                        accepted_through=self._generations[0].opened_at,
                        ahead_until=max(dropped.ahead.values(), default=0),
                    )
                )
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

    def ahead_until(self) -> int:
        """The latest stated time (unix ms) of the keys kept beyond their generation because
        they are dated in the future (0: none)."""
        return max(self._ahead.values(), default=0)

    def may_have_forgotten(self, occurred_at: datetime) -> bool:
        """Whether an earlier delivery of a signal that happened then may have been
        forgotten: it happened no later than the latest forgotten one."""
        if self.forgotten_through is None:
            return False
        return _millis(occurred_at) <= self.forgotten_through

    def snapshot(self) -> tuple[list[GenerationSnapshot], int | None, dict[str, int]]:
        return (
            [
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
            self.forgotten_through,
            {f"{key:016x}": at for key, at in self._ahead.items()},
        )


@dataclass
class IdentityState:
    market: Market
    last_seen: int  # unix seconds
    version: int = -1  # last customer version applied; -1: none


class Identities:
    """Per-identity state, least recently seen first, at most `capacity` identities."""

    def __init__(self, capacity: int, snapshot: MemorySnapshot | None = None) -> None:
        self._capacity = capacity
        self._states: dict[int, IdentityState] = {}
        self._markets: dict[Market, Market] = {}  # interned: equal markets share one object
        self._deleted: dict[int, int] = {}  # digest -> deleted at, oldest first
        if snapshot is not None and snapshot.deleted:
            raw = base64.b64decode(snapshot.deleted)
            for offset in range(0, len(raw), _DELETION.size):
                key, at = _DELETION.unpack_from(raw, offset)
                self._deleted[key] = at
        if snapshot is not None and snapshot.identities:
            raw = base64.b64decode(snapshot.identities)
            for offset in range(0, len(raw), _IDENTITY.size):
                key, market, seen, version, _flags = _IDENTITY.unpack_from(raw, offset)
                self._states[key] = IdentityState(
                    market=self._intern(
                        snapshot.markets[market] if market != _NO_MARKET else Market()
                    ),
                    last_seen=seen,
                    version=version,
                )

    def __len__(self) -> int:
        return len(self._states)

    def _intern(self, market: Market) -> Market:
        return self._markets.setdefault(market, market)

    def get(self, routing_key: str) -> IdentityState | None:
        return self._states.get(digest(routing_key))

    def touch(self, routing_key: str, now: datetime) -> IdentityState:
        """The identity's state, now most recently seen (created empty if unknown)."""
        key = digest(routing_key)
        state = self._states.pop(key, None)
        if state is None:
            state = IdentityState(market=self._intern(Market()), last_seen=_epoch(now))
        state.last_seen = _epoch(now)
        self._states[key] = state
        while len(self._states) > self._capacity:
            del self._states[next(iter(self._states))]
        return state

    def is_deleted(self, routing_key: str) -> bool:
        return digest(routing_key) in self._deleted

    def mark_deleted(self, routing_key: str, now: datetime) -> None:
        self._deleted[digest(routing_key)] = _epoch(now)
        while len(self._deleted) > DELETED_CAPACITY:
            del self._deleted[next(iter(self._deleted))]

    def set_market(self, state: IdentityState, market: Market) -> Market:
        state.market = self._intern(market)
        return state.market

    def snapshot(self, idle_before: datetime) -> tuple[list[Market], str]:
        """Identities seen since `idle_before`, markets interned by position."""
        cutoff = _epoch(idle_before)
        markets: dict[Market, int] = {}
        packed = bytearray()
        for key, state in self._states.items():
            if state.last_seen < cutoff:
                continue
            empty = state.market == Market()
            index = _NO_MARKET if empty else markets.setdefault(state.market, len(markets))
            packed += _IDENTITY.pack(key, index, state.last_seen, state.version, 0)
        return list(markets), base64.b64encode(bytes(packed)).decode()

    def deleted_snapshot(self, now: datetime) -> str:
        cutoff = _epoch(now) - DELETED_DAYS * 86_400
        return base64.b64encode(
            b"".join(_DELETION.pack(k, at) for k, at in self._deleted.items() if at >= cutoff)
        ).decode()


class ShardMemory:
    def __init__(
        self,
        *,
        seen_capacity: int,
        identity_capacity: int,
        snapshot: MemorySnapshot | None = None,
    ) -> None:
        self.seen = SeenKeys(seen_capacity, snapshot)
        self.identities = Identities(identity_capacity, snapshot)

    def snapshot(self, idle_before: datetime, now: datetime) -> MemorySnapshot:
        generations, forgotten_through, ahead = self.seen.snapshot()
        markets, identities = self.identities.snapshot(idle_before)
        return MemorySnapshot(
            generations=generations,
            forgotten_through=forgotten_through,
            ahead=ahead,
            deleted=self.identities.deleted_snapshot(now),
            markets=markets,
            identities=identities,
        )


def memory_with(snapshot: MemorySnapshot, keys: list[str], now: datetime) -> MemorySnapshot:
    """A snapshot that also remembers `keys` (accepted after it was taken), as its newest
    generation."""
    packed = b"".join(digest(key).to_bytes(8, "big") for key in keys)
    newest = GenerationSnapshot(
        opened_at=_epoch(now), latest=0, keys=base64.b64encode(packed).decode()
    )
    return snapshot.model_copy(update={"generations": [*snapshot.generations, newest]})
