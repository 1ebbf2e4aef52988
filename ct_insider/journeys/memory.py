"""What a journey shard remembers, within fixed bounds, across continue-as-new.

A shard serves many thousands of identities, most of them visitors seen once. It keeps:

- the dedupe keys of the signals it accepted, as 64-bit digests (`SeenKeys`);
- per identity, least recently seen first: the market it was last seen in (carried onto
  later signals that lack one), the last customer version applied (older state changes are
  stale); and, apart (for 30 days, the latest `DELETED_CAPACITY`), the customers whose
  deletion was delivered: nothing more is delivered for them.

**How far back the dedupe memory reaches is measured on our clock.** A signal states when
it happened on its sender's clock (`occurred_at`, which Insider gets as it is), and a
redelivery states the same time. Senders' clocks are not ours: a phone may run minutes
fast, a storefront with a time-zone bug hours. What the memory trusts is when a signal was
received: the bridge's stamp (`received_at`), never later than the workflow's time (a
shard catching up on a backlog accepts thousands of signals a second; their stamps keep
the horizon they had when they arrived).

- A key joins the newest of a few generations (one per minute, or per eighth of the
  capacity) if its signal is dated at most `CLOCK_SKEW_ALLOWANCE` (2 s) after it was
  received. When the memory is full the oldest generation goes, and `forgotten_through`
  becomes when its newest key was received: never in the future. Such a key's signal was
  dated no later than that plus the allowance, and so is any redelivery of it. A signal
  dated later cannot repeat a forgotten key; one dated at or before may (`Forgotten.RECEIVED`:
  its delivery looks it up in the dedupe archive, else asks Insider). A signal dated about when it arrives is never in
  doubt as long as the memory reaches back further than the allowance: 30,000 keys at 375
  signals/s reach 80 s.
- A signal dated further ahead (a fast clock) has its key kept apart with its stated time
  (at most an eighth of the capacity), and so recognised, until the received times reach
  it (less the allowance); then the key joins the newest generation as if received then,
  and is forgotten as any other. When more such keys wait than are kept, the soonest-dated
  goes early and `ahead_forgotten_through` records its stated time: a signal that arrives
  dated ahead, and no later than that, is in doubt (`Forgotten.AHEAD`: no archive holds
  such a key, Insider is asked); ordinary ones are not compared with
  it. (A redelivery of a key dropped so early that arrives after its stated time is not
  recognised: the one repeat the memory can let through, and only after more future-dated
  signals were waiting at once than it keeps apart.)
- A sender whose clock runs behind by more than the memory reaches has its signals read
  from Insider first: they look like redeliveries from before the horizon.

A generation the memory drops for capacity is handed to `SeenKeys.on_drop` when one listens
(the shard's dedupe archive, ct_insider/journeys/archive_lane.py, writes it outside the
workflow): it holds keys received (or released from apart) no later than its newest key's
receipt, which becomes `forgotten_through`. Keys kept apart never reach it: those dropped
early are only ever compared through `ahead_forgotten_through`.

The snapshot carried into the next run packs all of it as bytes, in base64: 8 bytes per
key, 16 per key kept apart, 19 per identity, 8 per deletion (grouped by day), the markets
identities were seen in up to `MARKETS_MAX_BYTES`. `max_snapshot_bytes` bounds its JSON
from the capacities (1.16 MB at a shard's defaults); the shard refuses settings whose
whole carry could exceed its budget (workflows/journey_shard.py).

A reshard hands the new owner of moving identities every dedupe key and those identities'
states (`ShardMemory.handoff`, in parts of a bounded size: `split_handoff`); the new owner
merges them (`inherit`) as generations that keep when their keys were received (our
clock), within its own capacities: what goes moves `forgotten_through` as usual, and the
snapshot's bound holds.

A 64-bit digest makes two different keys collide with probability ~n/2^64 per new key
(n keys remembered): for 30,000 remembered keys, once in ~6e14 signals.
"""

from __future__ import annotations

import base64
import heapq
import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Protocol

from pydantic import BaseModel, Field
from pydantic_core import to_json

from ct_insider.journeys.signals import Market, digest

# How far ahead of our clock a sender's date may be and still count as "now": a sane
# clock's is behind it (the bridge, Temporal and the workflow task come after the sender).
CLOCK_SKEW_ALLOWANCE = timedelta(seconds=2)
_ALLOWANCE_MS = int(CLOCK_SKEW_ALLOWANCE.total_seconds() * 1000)
GENERATIONS = 8
GENERATION_SECONDS = 60
_KEY = 8  # bytes of a digest
_AHEAD = struct.Struct(">QQ")  # digest, stated time (ms)
_IDENTITY = struct.Struct(">QHIiB")  # digest, market index, last seen, version, flags
_DELETION_BEFORE_DAYS = struct.Struct(">QI")  # digest, deleted at: snapshots before days
_NO_MARKET = 0xFFFF
_EMPTY_MARKET = Market()
_DAY = 86_400
# Deleted customers are remembered apart from the identities (which visitors' traffic turns
# over in minutes): this many by default, for this long.
DELETED_CAPACITY = 20_000
DELETED_DAYS = 30
# The markets a snapshot carries, at most (JSON bytes; most recently seen identities'
# first): beyond, an identity starts its next run with no market to fill gaps from.
MARKETS_MAX_BYTES = 32_768
# The snapshot's JSON besides the packed records: field names, numbers, the headers of
# 2 * GENERATIONS + 1 generations and of DELETED_DAYS + 1 days, and each base64 string's
# rounding up (~2 KB in all).
SNAPSHOT_FRAMING_BYTES = 8_192
# What one key accepted while the carried state was being completed adds (memory_with).
KEY_ADDED_BYTES = -(-_AHEAD.size * 4 // 3)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _b64_bytes(raw: int) -> int:
    return 4 * -(-raw // 3)


def _pack_keys(keys: Iterable[int]) -> str:
    return base64.b64encode(b"".join(key.to_bytes(_KEY, "big") for key in keys)).decode()


def _unpack_keys(packed: str) -> list[int]:
    raw = base64.b64decode(packed)
    return [int.from_bytes(raw[i : i + _KEY], "big") for i in range(0, len(raw), _KEY)]


def ahead_capacity(seen_capacity: int) -> int:
    """Keys dated ahead of our clock kept apart, at most."""
    return max(1, seen_capacity // GENERATIONS)


def max_snapshot_bytes(seen_capacity: int, identity_capacity: int, deleted_capacity: int) -> int:
    """The most JSON a snapshot of a memory of these capacities takes (keys accepted
    while the carry was completed are the carry's, see KEY_ADDED_BYTES)."""
    return (
        SNAPSHOT_FRAMING_BYTES
        + _b64_bytes(_KEY * seen_capacity)
        + _b64_bytes(_AHEAD.size * ahead_capacity(seen_capacity))
        + _b64_bytes(_IDENTITY.size * identity_capacity)
        + MARKETS_MAX_BYTES
        + _b64_bytes(_KEY * deleted_capacity)
    )


class GenerationSnapshot(BaseModel):
    opened_at: int  # unix seconds
    # Unix milliseconds: when (our clock) its newest key was received. Runs before
    # `shard-memory-on-our-clock` wrote the latest time their senders stated (it may be in
    # the future): read as no later than the moment the snapshot is loaded.
    latest: int
    keys: str  # base64 of 8-byte big-endian digests
    # Only in snapshots of runs before the patch: digest (hex) -> stated time (ms) of keys
    # dated beyond their 10-minute allowance.
    ahead: dict[str, int] = Field(default_factory=dict)


class MemorySnapshot(BaseModel):
    generations: list[GenerationSnapshot] = Field(default_factory=list)
    # Unix ms, our clock (before the patch: a sender's, read as at most the loading time).
    forgotten_through: int | None = None
    ahead_keys: str = ""  # base64 of (digest, stated time ms), dated ahead of our clock
    ahead_forgotten_through: int | None = None  # unix ms, the senders' clocks
    markets: list[Market] = Field(default_factory=list)
    identities: str = ""  # base64 of packed identity records, least recently seen first
    deleted_on: dict[int, str] = Field(default_factory=dict)  # unix day -> base64 digests
    # Only in snapshots of runs before the patch: future-dated keys (digest hex -> stated
    # ms), and deletions as packed (digest, deleted at).
    ahead: dict[str, int] = Field(default_factory=dict)
    deleted: str = ""


class Forgotten(IntEnum):
    """Whether a signal may repeat one whose key the memory forgot, and how (falsy: no)."""

    NO = 0
    # Dated no later than `forgotten_through` plus the allowance: its original, if any, was
    # in a generation the memory dropped (what the dedupe archive holds, archive_lane.py).
    RECEIVED = 1
    # Dated ahead, no later than `ahead_forgotten_through`: its original may be a key kept
    # apart and dropped early, which no generation (and no archive) ever held.
    AHEAD = 2


class DedupeKeys(Protocol):
    """The dedupe keys a shard remembers (SeenKeys; runs begun before the patch keep the
    memory they began with, journeys/sender_clock_keys.py)."""

    def __contains__(self, key: int) -> bool: ...

    def __len__(self) -> int: ...

    def remember(
        self, key: int, occurred_at: datetime, received_at: datetime | None, now: datetime
    ) -> Forgotten: ...

    def snapshot(self) -> MemorySnapshot: ...


@dataclass
class _Generation:
    opened_at: int  # unix seconds
    latest: int = 0  # unix ms: when its newest key was received
    keys: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class DroppedGeneration:
    """A generation the memory let go of, for the dedupe archive: its keys and when they
    were received (or released from apart), on our clock (never the senders')."""

    keys: list[int]  # digests, sorted
    received_through: int  # unix ms: none of them was received (or released) later


def received_moment(received_at: datetime | None, now: datetime) -> datetime:
    """When a signal reached us: the bridge's stamp, never later than the workflow's time
    (a bridge's clock is ours too, but the shard trusts none beyond its own)."""
    return now if received_at is None else min(received_at, now)


def _dated_ahead(stated: int, received: int) -> bool:
    return stated > received + _ALLOWANCE_MS


class SeenKeys:
    """Dedupe keys in generations by when they were received, and apart those of signals
    dated ahead of that (see the module's docstring)."""

    def __init__(
        self,
        capacity: int,
        snapshot: MemorySnapshot | None = None,
        *,
        loaded_at: datetime | None = None,
    ) -> None:
        # Told of every generation dropped for capacity, when set.
        self.on_drop: Callable[[DroppedGeneration], None] | None = None
        self._capacity = capacity
        self._generation_size = max(1, capacity // GENERATIONS)
        self._generations: deque[_Generation] = deque()
        self._size = 0
        self.forgotten_through: int | None = None  # unix ms, our clock
        self._ahead: dict[int, int] = {}  # digest -> stated time (ms)
        self._ahead_due: list[tuple[int, int]] = []  # heap of (stated time, digest)
        self._ahead_capacity = ahead_capacity(capacity)
        self.ahead_forgotten_through: int | None = None  # unix ms, the senders' clocks
        if snapshot is not None:
            if loaded_at is None:
                raise ValueError("a snapshot is read as of a moment: pass loaded_at")
            self._restore(snapshot, _millis(loaded_at))

    def _restore(self, snapshot: MemorySnapshot, now: int) -> None:
        # Snapshots of runs before the patch hold senders' times, which may be in the
        # future: nothing is taken as later than now.
        if snapshot.forgotten_through is not None:
            self.forgotten_through = min(snapshot.forgotten_through, now)
        self.ahead_forgotten_through = snapshot.ahead_forgotten_through
        for saved in snapshot.generations:
            keys = set(_unpack_keys(saved.keys))
            self._generations.append(_Generation(saved.opened_at, min(saved.latest, now), keys))
            self._size += len(keys)
            for key, stated in saved.ahead.items():
                self._keep_ahead(int(key, 16), stated)
        for key, stated in snapshot.ahead.items():
            self._keep_ahead(int(key, 16), stated)
        # (Those whose date has come join the generations as of the next signal received.)
        for key, stated in _AHEAD.iter_unpack(base64.b64decode(snapshot.ahead_keys)):
            self._keep_ahead(key, stated)

    def __contains__(self, key: int) -> bool:
        return key in self._ahead or any(key in g.keys for g in self._generations)

    def __len__(self) -> int:
        """Keys in generations (those kept apart by their date are not counted)."""
        return self._size

    def remember(
        self, key: int, occurred_at: datetime, received_at: datetime | None, now: datetime
    ) -> Forgotten:
        """Remember `key` of a signal dated `occurred_at` (its sender's clock), received
        by the bridge at `received_at` (ours; None: now) and accepted `now`; whether that
        signal may repeat one whose key was forgotten before."""
        received = received_moment(received_at, now)
        doubt = self.may_have_forgotten(occurred_at, received)
        received_ms = _millis(received)
        self._release_due(received_ms)
        self._admit(key, _millis(occurred_at), received_ms)
        return doubt

    def may_have_forgotten(self, occurred_at: datetime, received: datetime) -> Forgotten:
        """Whether an earlier delivery of a signal dated `occurred_at`, received
        `received`, may have been forgotten."""
        stated = _millis(occurred_at)
        if _dated_ahead(stated, _millis(received)):
            # Its original, if any, was dated ahead too, and kept apart unless dropped early.
            early = self.ahead_forgotten_through
            return Forgotten.AHEAD if early is not None and stated <= early else Forgotten.NO
        through = self.forgotten_through
        if through is not None and stated <= through + _ALLOWANCE_MS:
            return Forgotten.RECEIVED
        return Forgotten.NO

    def _admit(self, key: int, stated: int, received: int) -> None:
        if _dated_ahead(stated, received):
            self._keep_ahead(key, stated)
        else:
            self._add(key, received)

    def _add(self, key: int, received: int) -> None:
        second = received // 1000
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
        newest.latest = max(newest.latest, received)
        self._evict()

    def _evict(self) -> None:
        """Beyond the capacity the oldest generations go, moving `forgotten_through`."""
        while self._size > self._capacity and len(self._generations) > 1:
            dropped = self._generations.popleft()
            self._size -= len(dropped.keys)
            self.forgotten_through = max(self.forgotten_through or 0, dropped.latest)
            if self.on_drop is not None:
                self.on_drop(DroppedGeneration(sorted(dropped.keys), dropped.latest))

    def inherit(self, snapshot: MemorySnapshot, now: datetime) -> None:
        """Take another shard's keys (a reshard's handoff, read as of `now`) as generations
        of their age: each keeps when (on our clock) its newest key was received, so what
        the capacity makes go moves `forgotten_through` by receipt times as usual, and a
        redelivery of a signal neither shard remembers is in doubt, never a silent
        duplicate. Its keys dated ahead stay apart (within their capacity)."""
        other = SeenKeys(self._capacity, snapshot, loaded_at=now)
        merged = sorted([*self._generations, *other._generations], key=lambda g: g.opened_at)
        self._generations = deque(merged)
        self._size = sum(len(generation.keys) for generation in merged)
        if other.forgotten_through is not None:
            self.forgotten_through = max(self.forgotten_through or 0, other.forgotten_through)
        if other.ahead_forgotten_through is not None:
            self.ahead_forgotten_through = max(
                self.ahead_forgotten_through or 0, other.ahead_forgotten_through
            )
        for key, stated in other._ahead.items():
            self._keep_ahead(key, stated)
        while len(self._generations) > 2 * GENERATIONS:
            self._merge_oldest()
        self._evict()

    def _merge_oldest(self) -> None:
        """A quiet shard opens a generation a minute: keep their number bounded by merging
        the two oldest (what they remember and when it was received stay the same)."""
        older = self._generations.popleft()
        newer = self._generations[0]
        newer.opened_at = older.opened_at
        newer.latest = max(older.latest, newer.latest)
        self._size -= len(older.keys & newer.keys)
        newer.keys |= older.keys

    def _keep_ahead(self, key: int, stated: int) -> None:
        self._ahead[key] = stated
        heapq.heappush(self._ahead_due, (stated, key))
        while len(self._ahead) > self._ahead_capacity:
            soonest, dropped = heapq.heappop(self._ahead_due)
            if self._ahead.get(dropped) == soonest:
                del self._ahead[dropped]
                self.ahead_forgotten_through = max(self.ahead_forgotten_through or 0, soonest)

    def _release_due(self, received: int) -> None:
        """Keys whose stated time our clock has reached join the newest generation."""
        while self._ahead_due and not _dated_ahead(self._ahead_due[0][0], received):
            stated, key = heapq.heappop(self._ahead_due)
            if self._ahead.get(key) == stated:
                del self._ahead[key]
                self._add(key, received)

    def snapshot(self) -> MemorySnapshot:
        return MemorySnapshot(
            generations=[
                GenerationSnapshot(
                    opened_at=generation.opened_at,
                    latest=generation.latest,
                    keys=_pack_keys(generation.keys),
                )
                for generation in self._generations
            ],
            forgotten_through=self.forgotten_through,
            ahead_keys=base64.b64encode(
                b"".join(_AHEAD.pack(key, stated) for key, stated in self._ahead.items())
            ).decode(),
            ahead_forgotten_through=self.ahead_forgotten_through,
        )


@dataclass
class IdentityState:
    market: Market
    last_seen: int  # unix seconds
    version: int = -1  # last customer version applied; -1: none


class Identities:
    """Per-identity state, least recently seen first, at most `capacity` identities; and
    the customers whose deletion was delivered, at most `deleted_capacity`."""

    def __init__(
        self,
        capacity: int,
        snapshot: MemorySnapshot | None = None,
        *,
        deleted_capacity: int = DELETED_CAPACITY,
    ) -> None:
        self._capacity = capacity
        self._deleted_capacity = deleted_capacity
        self._states: dict[int, IdentityState] = {}
        self._markets: dict[Market, Market] = {}  # interned: equal markets share one object
        self._deleted: dict[int, int] = {}  # digest -> deleted at, oldest first
        if snapshot is not None:
            self._restore(snapshot)

    def _restore(self, snapshot: MemorySnapshot) -> None:
        for key, at in _DELETION_BEFORE_DAYS.iter_unpack(base64.b64decode(snapshot.deleted)):
            self._deleted[key] = at
        for day in sorted(snapshot.deleted_on):
            # Remembered to the end of its day: never forgotten early.
            at = (day + 1) * _DAY - 1
            for key in _unpack_keys(snapshot.deleted_on[day]):
                self._deleted[key] = at
        self._trim_deleted()
        for key, market, seen, version, _flags in _IDENTITY.iter_unpack(
            base64.b64decode(snapshot.identities)
        ):
            self._states[key] = IdentityState(
                market=self._intern(
                    snapshot.markets[market] if market != _NO_MARKET else _EMPTY_MARKET
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
            state = IdentityState(market=self._intern(_EMPTY_MARKET), last_seen=_epoch(now))
        state.last_seen = _epoch(now)
        self._states[key] = state
        while len(self._states) > self._capacity:
            del self._states[next(iter(self._states))]
        return state

    def is_deleted(self, routing_key: str) -> bool:
        return digest(routing_key) in self._deleted

    def mark_deleted(self, routing_key: str, now: datetime) -> None:
        key = digest(routing_key)
        self._deleted.pop(key, None)  # the latest deletion counts, and is the newest
        self._deleted[key] = _epoch(now)
        self._trim_deleted()

    def _trim_deleted(self) -> None:
        while len(self._deleted) > self._deleted_capacity:
            del self._deleted[next(iter(self._deleted))]

    def set_market(self, state: IdentityState, market: Market) -> Market:
        state.market = self._intern(market)
        return state.market

    def moving(self, moves: Callable[[int], bool]) -> Identities:
        """The states and deletions of the identities whose digest `moves` picks (what a
        reshard hands to their new shard)."""
        moved = Identities(self._capacity, deleted_capacity=self._deleted_capacity)
        moved._states = {key: state for key, state in self._states.items() if moves(key)}
        moved._deleted = {key: at for key, at in self._deleted.items() if moves(key)}
        return moved

    def inherit(self, snapshot: MemorySnapshot) -> None:
        """Take identities from another shard: the most recently seen state of each (the
        highest customer version either knew), deletions of both; within the capacities,
        the least recently seen (the oldest deletions) go as usual."""
        other = Identities(self._capacity, snapshot, deleted_capacity=self._deleted_capacity)
        for key, state in other._states.items():
            mine = self._states.get(key)
            if mine is None or state.last_seen >= mine.last_seen:
                version = max(state.version, mine.version if mine else -1)
                self._states[key] = IdentityState(
                    self._intern(state.market), state.last_seen, version
                )
            else:
                mine.version = max(mine.version, state.version)
        self._states = dict(sorted(self._states.items(), key=lambda item: item[1].last_seen))
        while len(self._states) > self._capacity:
            del self._states[next(iter(self._states))]
        for key, at in other._deleted.items():
            self._deleted[key] = max(at, self._deleted.get(key, at))
        self._deleted = dict(sorted(self._deleted.items(), key=lambda item: item[1]))
        self._trim_deleted()

    def snapshot(self, idle_before: datetime) -> tuple[list[Market], str]:
        """Identities seen since `idle_before`, markets interned by position (those of the
        most recently seen identities, up to MARKETS_MAX_BYTES)."""
        cutoff = _epoch(idle_before)
        kept = [(key, state) for key, state in self._states.items() if state.last_seen >= cutoff]
        markets: dict[Market, int] = {}
        room = MARKETS_MAX_BYTES
        for _key, state in reversed(kept):
            market = state.market
            if market == _EMPTY_MARKET or market in markets:
                continue
            size = len(to_json(market)) + 1  # and a comma
            if size <= room:
                room -= size
                markets[market] = len(markets)
        packed = b"".join(
            _IDENTITY.pack(
                key, markets.get(state.market, _NO_MARKET), state.last_seen, state.version, 0
            )
            for key, state in kept
        )
        return list(markets), base64.b64encode(packed).decode()

    def deleted_snapshot(self, now: datetime) -> dict[int, str]:
        """The deletions of the last DELETED_DAYS, by day."""
        cutoff = _epoch(now) - DELETED_DAYS * _DAY
        days: dict[int, list[int]] = {}
        for key, at in self._deleted.items():
            if at >= cutoff:
                days.setdefault(at // _DAY, []).append(key)
        return {day: _pack_keys(keys) for day, keys in sorted(days.items())}


class ShardMemory:
    def __init__(
        self,
        *,
        seen_capacity: int,
        identity_capacity: int,
        deleted_capacity: int = DELETED_CAPACITY,
        snapshot: MemorySnapshot | None = None,
        now: datetime | None = None,
        seen: DedupeKeys | None = None,
    ) -> None:
        """`now`: when `snapshot` is loaded; `seen`: dedupe keys to keep instead of loading
        them from the snapshot (a run begun before the patch keeps the memory it began
        with)."""
        self._seen_capacity = seen_capacity
        self.seen: DedupeKeys = (
            seen if seen is not None else SeenKeys(seen_capacity, snapshot, loaded_at=now)
        )
        self.identities = Identities(identity_capacity, snapshot, deleted_capacity=deleted_capacity)

    def snapshot(self, idle_before: datetime, now: datetime) -> MemorySnapshot:
        markets, identities = self.identities.snapshot(idle_before)
        return self.seen.snapshot().model_copy(
            update={
                "markets": markets,
                "identities": identities,
                "deleted_on": self.identities.deleted_snapshot(now),
            }
        )

    def handoff(
        self, moves: Callable[[int], bool], idle_before: datetime, now: datetime
    ) -> MemorySnapshot:
        """What a reshard hands a new owner: every dedupe key (a key's digest names no
        identity, so all of them), and the states and deletions of the identities `moves`
        picks by digest."""
        moved = self.identities.moving(moves)
        markets, identities = moved.snapshot(idle_before)
        return self.seen.snapshot().model_copy(
            update={
                "markets": markets,
                "identities": identities,
                "deleted_on": moved.deleted_snapshot(now),
            }
        )

    def inherit(self, snapshot: MemorySnapshot, now: datetime) -> None:
        """Merge a handoff (or a part of one), read as of `now`, into this memory. A run
        begun before `shard-memory-on-our-clock` measured its keys by senders' clocks: the
        first handoff it takes moves its keys to our clock (read as no later than now, as
        its next run would read them), since inherited keys are measured on ours."""
        seen = self.seen
        if not isinstance(seen, SeenKeys):
            seen = self.seen = SeenKeys(self._seen_capacity, seen.snapshot(), loaded_at=now)
        seen.inherit(snapshot, now)
        self.identities.inherit(snapshot)


def memory_with(
    snapshot: MemorySnapshot, keys: list[tuple[str, datetime, datetime]]
) -> MemorySnapshot:
    """A snapshot that also remembers `keys` (intake key, stated time, received moment),
    accepted after it was taken: a newest generation, or apart when dated ahead."""
    ahead = bytearray(base64.b64decode(snapshot.ahead_keys))
    current = []
    for key, occurred_at, received in keys:
        stated = _millis(occurred_at)
        if _dated_ahead(stated, _millis(received)):
            ahead += _AHEAD.pack(digest(key), stated)
        else:
            current.append(digest(key))
    newest = GenerationSnapshot(
        opened_at=_epoch(min(received for _, _, received in keys)),
        latest=_millis(max(received for _, _, received in keys)),
        keys=_pack_keys(current),
    )
    return snapshot.model_copy(
        update={
            "generations": [*snapshot.generations, newest],
            "ahead_keys": base64.b64encode(bytes(ahead)).decode(),
        }
    )


# What a handoff part's JSON costs (as HandoffPart's signal carries it): its fixed fields
# and framing, and per record (base64 of the packed bytes, rounded up; a generation's and a
# day's own fields; a market's JSON and its comma).
_PART_COST = 600
_GENERATION_COST = 120
_DAY_COST = 24
_KEY_COST = -(-_KEY * 4 // 3)
_AHEAD_COST = -(-_AHEAD.size * 4 // 3)
_IDENTITY_COST = -(-_IDENTITY.size * 4 // 3)


class _Parts:
    """Fills handoff parts up to a size, opening the next one when a record does not fit."""

    def __init__(self, max_bytes: int, snapshot: MemorySnapshot) -> None:
        self._max = max_bytes
        # Both horizons travel with every part: inheriting any of them keeps them.
        self._horizons = MemorySnapshot(
            forgotten_through=snapshot.forgotten_through,
            ahead_forgotten_through=snapshot.ahead_forgotten_through,
        )
        self.sealed: list[MemorySnapshot] = []
        self._open()

    def _open(self) -> None:
        self.generations: list[GenerationSnapshot] = []
        self.ahead = bytearray()
        self.markets: dict[Market, int] = {}
        self.identities = bytearray()
        self.deleted_on: dict[int, list[int]] = {}
        self.left = self._max - _PART_COST
        self.used = False

    def fits(self, cost: int) -> bool:
        return cost <= self.left

    def take(self, cost: int) -> None:
        """Make room for a record of `cost` (sealing the part when it does not fit)."""
        if cost > self.left:
            self.seal()
        self.left -= cost
        self.used = True

    def seal(self) -> None:
        if not self.used:
            return
        self.sealed.append(
            self._horizons.model_copy(
                update={
                    "generations": self.generations,
                    "ahead_keys": base64.b64encode(bytes(self.ahead)).decode(),
                    "markets": list(self.markets),
                    "identities": base64.b64encode(bytes(self.identities)).decode(),
                    "deleted_on": {
                        day: _pack_keys(keys) for day, keys in sorted(self.deleted_on.items())
                    },
                }
            )
        )
        self._open()


def split_handoff(snapshot: MemorySnapshot, max_bytes: int) -> list[MemorySnapshot]:
    """A handoff as parts whose JSON stays within `max_bytes` (Temporal refuses payloads
    over 2 MB), each a snapshot of its own: inheriting every part is inheriting the whole.
    (Keys dated ahead in the form of runs before `shard-memory-on-our-clock` travel packed,
    as SeenKeys keeps them.)"""
    parts = _Parts(max_bytes, snapshot)
    ahead = [(int(key, 16), stated) for key, stated in snapshot.ahead.items()]
    ahead += _AHEAD.iter_unpack(base64.b64decode(snapshot.ahead_keys))
    for generation in snapshot.generations:
        ahead += [(int(key, 16), stated) for key, stated in generation.ahead.items()]
        keys = _unpack_keys(generation.keys)
        start = 0
        while start < len(keys):
            room = (parts.left - _GENERATION_COST) // _KEY_COST
            if room <= 0:
                parts.seal()
                continue
            chunk = keys[start : start + room]
            parts.take(_GENERATION_COST + _KEY_COST * len(chunk))
            parts.generations.append(
                GenerationSnapshot(
                    opened_at=generation.opened_at,
                    latest=generation.latest,
                    keys=_pack_keys(chunk),
                )
            )
            start += len(chunk)
    for key, stated in ahead:
        parts.take(_AHEAD_COST)
        parts.ahead += _AHEAD.pack(key, stated)
    for key, market, seen, version, flags in _IDENTITY.iter_unpack(
        base64.b64decode(snapshot.identities)
    ):
        found = snapshot.markets[market] if market != _NO_MARKET else None
        market_cost = 0 if found is None else len(to_json(found)) + 1
        if not parts.fits(_IDENTITY_COST + market_cost):
            parts.seal()
        parts.take(_IDENTITY_COST + (market_cost if found not in parts.markets else 0))
        index = _NO_MARKET if found is None else parts.markets.setdefault(found, len(parts.markets))
        parts.identities += _IDENTITY.pack(key, index, seen, version, flags)
    for day, packed in sorted(snapshot.deleted_on.items()):
        for key in _unpack_keys(packed):
            parts.take(_KEY_COST + (0 if day in parts.deleted_on else _DAY_COST))
            parts.deleted_on.setdefault(day, []).append(key)
    parts.used = True  # (an empty handoff is one empty part: the receiver counts it)
    parts.seal()
    return parts.sealed
