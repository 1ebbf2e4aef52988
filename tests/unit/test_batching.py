"""Request splitting respects Insider's count and byte limits and never loses a record."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ct_insider.insider.batching import Chunk, chunk_serialized


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=400), max_size=200),
    max_records=st.integers(min_value=1, max_value=50),
    max_bytes=st.integers(min_value=50, max_value=2_000),
)
def test_every_record_is_sent_once_in_order_or_reported(
    sizes: list[int], max_records: int, max_bytes: int
) -> None:
    parts = [b"x" * size for size in sizes]
    envelope = 10
    seen: list[int] = []
    for chunk in chunk_serialized(
        parts, max_records=max_records, max_bytes=max_bytes, envelope_bytes=envelope
    ):
        if isinstance(chunk, int):
            assert envelope + sizes[chunk] > max_bytes  # reported only when it cannot fit alone
            seen.append(chunk)
            continue
        assert isinstance(chunk, Chunk)
        assert 1 <= len(chunk.indices) <= max_records
        assert envelope + sum(len(p) for p in chunk.parts) + len(chunk.parts) - 1 <= max_bytes
        seen.extend(chunk.indices)
    assert sorted(seen) == list(range(len(sizes)))


def test_thousand_user_limit() -> None:
    chunks = list(
        chunk_serialized([b"{}"] * 2_500, max_records=1_000, max_bytes=5_000_000, envelope_bytes=20)
    )
    assert [len(c.indices) for c in chunks if isinstance(c, Chunk)] == [1_000, 1_000, 500]
