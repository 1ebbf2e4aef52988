"""The dedupe archive: the keys a journey shard's memory let go of, outside the workflow.

A shard remembers its latest keys inside its workflow (ct_insider/journeys/memory.py), as
much as Temporal's payload limit allows: at 1,500 events/s about a minute and a half. Each
generation the memory drops is written here (by the shard's bookkeeping, see
archive_lane.py), so that a redelivery older than the memory is still recognised without
reading Insider:

- one commercetools custom object per generation (container `ct-insider-dedupe-archive`,
  key `<lane>-<sequence>`), at most 8,192 sorted 64-bit digests (~87 KB of base64), never
  changed once written: a retried write writes the same value again;
- a delivery looks its forgotten signals up in the objects the shard names (those that
  may hold them), through a per-worker-process cache of sorted `array("Q")`s bounded by
  bytes (least recently used first out): the objects never change, so the cache never
  has to check them again, and a cold cache (after a restart) reads them in groups;
- whether a key absent from those objects can be trusted to be new is the shard's call
  (`ArchiveView.covered_from`), see `resolve`; an archive commercetools cannot serve holds
  no delivery up: its forgotten signals are settled by reading Insider.
"""

from __future__ import annotations

import base64
import json
import sys
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Sequence

import httpx
from pydantic import BaseModel

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.journeys.memory import CLOCK_SKEW_ALLOWANCE
from ct_insider.journeys.signals import JourneySignal, digest
from ct_insider.logging import get_logger

log = get_logger(__name__)

CONTAINER = "ct-insider-dedupe-archive"
# Digests per object: 64 KB, ~87 KB as base64 in the custom object's value.
MAX_KEYS_PER_OBJECT = 8_192
# A worker process's cache of archived generations, in bytes of digests (8 per key): at
# 1,500 events/s a lookup of a redelivery delayed ~15 minutes needs the keys forgotten since,
# ~11 MB.
CACHE_BYTES = 32 * 1024 * 1024
# Objects read per request on a cache miss (each up to ~87 KB).
FETCH_GROUP = 20
# Expired objects a sweep deletes at most (see `ArchiveStore.sweep`).
SWEEP_LIMIT = 100


def object_key(lane: str, sequence: int) -> str:
    return f"{lane}-{sequence:09d}"


def pack(keys: Sequence[int]) -> str:
    """Sorted digests as base64 of little-endian 64-bit integers."""
    packed = array("Q", keys)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def unpack(packed: str) -> array[int]:
    keys = array("Q")
    keys.frombytes(base64.b64decode(packed))
    if sys.byteorder == "big":
        keys.byteswap()
    return keys


class ArchivedGeneration(BaseModel):
    """One object of the archive, as the shard writes it."""

    lane: str  # the shard's archive lane (see archive_lane.py)
    shard: str  # the shard's workflow id, for operators
    sequence: int
    # Unix ms, our clock: none of its keys was received (or released from apart, see
    # memory.py) later.
    received_through: int
    expires_at: int  # unix ms: from then on no shard looks it up
    keys: str  # sorted digests (`pack`)

    @property
    def key(self) -> str:
        return object_key(self.lane, self.sequence)

    @property
    def key_count(self) -> int:
        return len(self.keys) * 3 // 4 // 8  # base64: 4 characters per 3 bytes, 8 per key


class ArchiveView(BaseModel):
    """What a delivery needs to look its forgotten signals up in the archive."""

    lane: str
    sequences: list[int]  # the objects that may hold them
    # Unix ms, our clock: every key the shard forgot that it had received since then is in
    # the archive. None: no such moment (a write still pending).
    covered_from: int | None = None


class ArchiveStore:
    def __init__(self, ct: CommercetoolsClient, *, container: str = CONTAINER) -> None:
        self._ct = ct
        self._container = container

    async def write(self, generation: ArchivedGeneration) -> None:
        """Create the object, or write the same value again (a retried write)."""
        await self._ct.post_json(
            "custom-objects",
            {
                "container": self._container,
                "key": generation.key,
                "value": generation.model_dump(mode="json"),
            },
        )

    async def read(self, keys: Sequence[str]) -> dict[str, array[int]]:
        """The digests of those objects that exist (deleted ones are simply absent)."""
        container = json.dumps(self._container)
        found = await self._ct.find_in(
            "custom-objects", keys, lambda quoted: f"container={container} and key in ({quoted})"
        )
        return {str(raw["key"]): unpack(raw["value"]["keys"]) for raw in found}

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            await self._ct.delete(f"custom-objects/{self._container}/{key}")

    async def sweep(self, before: int) -> list[str]:
        """Delete (at most `SWEEP_LIMIT`) objects expired before `before` (unix ms), whatever
        their lane: those of a shard that was started afresh have nobody else to delete them."""
        container = json.dumps(self._container)
        page = await self._ct.page(
            "custom-objects",
            where=f"container={container} and value(expires_at < {before})",
            page_size=SWEEP_LIMIT,
        )
        keys = [str(raw["key"]) for raw in page.results]
        await self.delete(keys)
        return keys


class DedupeArchive:
    """The archive as a worker process uses it: the store, behind a cache of the archived
    generations it has read or written, least recently used first, at most `max_bytes` of
    digests."""

    def __init__(self, store: ArchiveStore, max_bytes: int = CACHE_BYTES) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._objects: OrderedDict[str, array[int]] = OrderedDict()
        self._bytes = 0
        self.reads = 0  # objects read from commercetools

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def keep(self, key: str, keys: array[int]) -> None:
        self._forget([key])
        self._objects[key] = keys
        self._bytes += keys.itemsize * len(keys)
        while self._bytes > self._max_bytes and len(self._objects) > 1:
            _, evicted = self._objects.popitem(last=False)
            self._bytes -= evicted.itemsize * len(evicted)

    async def write(self, generation: ArchivedGeneration) -> None:
        await self._store.write(generation)
        self.keep(generation.key, unpack(generation.keys))

    async def delete(self, keys: Sequence[str]) -> None:
        await self._store.delete(keys)
        self._forget(keys)

    async def sweep(self, before: int) -> None:
        self._forget(await self._store.sweep(before))

    def _forget(self, keys: Sequence[str]) -> None:
        for key in keys:
            dropped = self._objects.pop(key, None)
            if dropped is not None:
                self._bytes -= dropped.itemsize * len(dropped)

    async def find(self, object_keys: Sequence[str], digests: set[int]) -> set[int]:
        """Which of `digests` those objects hold. Missing objects are read in groups; each
        group is searched as soon as it arrives, so a lookup wider than the cache stays
        within its bound."""
        wanted = sorted(digests)
        found: set[int] = set()
        missing = []
        for key in object_keys:
            keys = self._objects.get(key)
            if keys is None:
                missing.append(key)
                continue
            self._objects.move_to_end(key)
            found.update(_held(keys, wanted))
        for start in range(0, len(missing), FETCH_GROUP):
            group = await self._store.read(missing[start : start + FETCH_GROUP])
            self.reads += len(group)
            for key, keys in group.items():
                found.update(_held(keys, wanted))
                self.keep(key, keys)
        return found


def _held(keys: array[int], wanted: list[int]) -> list[int]:
    held = []
    for value in wanted:
        at = bisect_left(keys, value)
        if at < len(keys) and keys[at] == value:
            held.append(value)
    return held


def covered(view: ArchiveView, signal: JourneySignal) -> bool:
    """Whether a forgotten signal absent from the archive is surely new. Its original (if
    any) joined a generation when it was received, dated at most the skew allowance after
    that, or, dated further ahead, when receipt times reached its date (memory.py): either
    way no earlier than the stated time minus the allowance. (A signal in doubt because a
    key kept apart was dropped early never gets here: those keys are not archived.)"""
    if view.covered_from is None:
        return False
    earliest = signal.occurred_at - CLOCK_SKEW_ALLOWANCE
    return int(earliest.timestamp() * 1000) >= view.covered_from


async def resolve(
    archive: DedupeArchive, view: ArchiveView | None, signals: Sequence[JourneySignal]
) -> list[int]:
    """Settle each forgotten signal of a batch: the indices of the archived ones (they are
    duplicates); a signal the archive does not cover goes in doubt (Insider is asked)."""
    forgotten = [i for i, s in enumerate(signals) if s.forgotten and not s.doubt]
    if not forgotten:
        return []
    if view is None:
        for index in forgotten:
            signals[index].doubt = True
        return []
    digests = {index: digest(signals[index].intake_key()) for index in forgotten}
    keys = [object_key(view.lane, sequence) for sequence in view.sequences]
    try:
        archived = await archive.find(keys, set(digests.values()))
    except (CommercetoolsError, httpx.HTTPError) as exc:  # Insider is asked instead
        log.warning("dedupe archive not readable", error=str(exc))
        archived = set()
        view = view.model_copy(update={"covered_from": None})
    duplicates = []
    for index in forgotten:
        if digests[index] in archived:
            duplicates.append(index)
        elif not covered(view, signals[index]):
            signals[index].doubt = True
    return duplicates
