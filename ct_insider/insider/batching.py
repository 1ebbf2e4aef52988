"""Split records into request bodies that respect Insider's count and byte limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """Indices into the caller's sequence, with their already-serialized JSON."""

    indices: list[int]
    parts: list[bytes]


def chunk_serialized(
    parts: Sequence[bytes], *, max_records: int, max_bytes: int, envelope_bytes: int
) -> Iterator[Chunk | int]:
    """Yield chunks of at most `max_records` whose joined size fits `max_bytes`.

    A record that alone exceeds the limit is yielded as its bare index so the caller can
    report it rather than send a request Insider would refuse whole.
    """
    indices: list[int] = []
    chunk: list[bytes] = []
    size = envelope_bytes
    for index, part in enumerate(parts):
        cost = len(part) + (1 if chunk else 0)  # the comma between array items
        if envelope_bytes + len(part) > max_bytes:
            yield index
            continue
        if chunk and (len(chunk) >= max_records or size + cost > max_bytes):
            yield Chunk(indices, chunk)
            indices, chunk, size = [], [], envelope_bytes
            cost = len(part)
        indices.append(index)
        chunk.append(part)
        size += cost
    if chunk:
        yield Chunk(indices, chunk)
