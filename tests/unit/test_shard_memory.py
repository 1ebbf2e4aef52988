"""A journey shard's memory: bounded dedupe keys, per-identity state, compact snapshots."""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime, timedelta

from pydantic_core import to_json

from ct_insider.journeys.memory import (
    CLOCK_SKEW_ALLOWANCE,
    DELETED_CAPACITY,
    MARKETS_MAX_BYTES,
    DedupeKeys,
    GenerationSnapshot,
    Identities,
    MemorySnapshot,
    SeenKeys,
    ShardMemory,
    max_snapshot_bytes,
    memory_with,
)
from ct_insider.journeys.signals import Market, digest

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _fill(seen: DedupeKeys, prefix: str, count: int, occurred_at: datetime, now: datetime) -> None:
    for number in range(count):
        seen.remember(digest(f"{prefix}-{number}"), occurred_at, None, now)


# --- SeenKeys ---------------------------------------------------------------------------


def test_added_keys_are_remembered_and_others_are_not() -> None:
    # Given an empty memory
    seen = SeenKeys(capacity=100)
    # When two keys are added
    seen.remember(digest("event-1"), NOW, None, NOW)
    seen.remember(digest("event-2"), NOW, None, NOW)
    # Then both are remembered, a third is not, and nothing was forgotten
    assert digest("event-1") in seen
    assert digest("event-2") in seen
    assert digest("event-3") not in seen
    assert len(seen) == 2
    assert seen.forgotten_through is None


def test_capacity_drops_the_oldest_generation_only() -> None:
    # Given a memory of 16 keys (generations of 2) holding exactly 16 keys
    seen = SeenKeys(capacity=16)
    _fill(seen, "k", 16, NOW, NOW)
    assert len(seen) == 16
    assert seen.forgotten_through is None
    # When one more key arrives
    seen.remember(digest("k-16"), NOW, None, NOW)
    # Then the oldest generation (the first two keys) is gone and the rest stays
    assert digest("k-0") not in seen
    assert digest("k-1") not in seen
    assert all(digest(f"k-{n}") in seen for n in range(2, 17))
    assert len(seen) == 15
    assert seen.forgotten_through is not None


def test_forgotten_through_is_when_the_newest_dropped_key_was_received_not_its_date() -> None:
    # Given a first generation received at two moments, its signals dated by their senders
    # (one clock a day behind, one a second ahead: neither date counts), then later keys
    seen = SeenKeys(capacity=16)
    seen.remember(digest("slow"), NOW - timedelta(days=1), None, NOW - timedelta(seconds=50))
    seen.remember(digest("fast"), NOW - timedelta(seconds=9), None, NOW - timedelta(seconds=10))
    _fill(seen, "later", 14, NOW, NOW)
    # When the memory overflows and the first generation is dropped
    seen.remember(digest("overflow"), NOW, None, NOW)
    # Then forgotten_through is when its newest key was received
    assert digest("slow") not in seen
    assert digest("fast") not in seen
    assert seen.forgotten_through == _millis(NOW - timedelta(seconds=10))


def test_the_bridge_stamp_measures_the_memory_and_is_never_taken_beyond_now() -> None:
    # Given a key the bridge received two minutes before the shard accepted it (a backlog),
    # then one from a bridge whose clock runs an hour fast, then others
    seen = SeenKeys(capacity=16)
    received = NOW - timedelta(minutes=2)
    seen.remember(digest("backlog"), received, received, NOW)
    seen.remember(digest("fast-bridge"), NOW, NOW + timedelta(hours=1), NOW)
    _fill(seen, "later", 14, NOW, NOW)
    # When the first is dropped
    seen.remember(digest("overflow"), NOW, None, NOW)
    # Then the memory reached back to when the bridge received it
    assert digest("backlog") not in seen
    assert seen.forgotten_through == _millis(received)
    # And when the second is dropped, to no later than the shard's time
    _fill(seen, "more", 2, NOW, NOW)
    assert digest("fast-bridge") not in seen
    assert seen.forgotten_through == _millis(NOW)


def _with_forgotten(through: datetime) -> SeenKeys:
    """A memory that forgot keys it received up to `through`."""
    seen = SeenKeys(capacity=16)
    _fill(seen, "old", 2, through, through)
    _fill(seen, "new", 15, NOW, NOW)
    assert seen.forgotten_through == _millis(through)
    return seen


def test_may_have_forgotten_a_signal_dated_up_to_the_allowance_after_forgotten_through() -> None:
    # Given a memory that forgot keys it received up to an hour ago
    through = NOW - timedelta(hours=1)
    seen = _with_forgotten(through)
    # Then a signal dated then, or before, or by a sender whose clock ran up to the
    # allowance ahead of ours, may repeat a forgotten one
    assert seen.may_have_forgotten(through, NOW)
    assert seen.may_have_forgotten(through - timedelta(days=3), NOW)
    assert seen.may_have_forgotten(through + CLOCK_SKEW_ALLOWANCE, NOW)


def test_cannot_have_forgotten_a_signal_dated_after_that() -> None:
    # Given a memory that forgot keys it received up to an hour ago
    through = NOW - timedelta(hours=1)
    seen = _with_forgotten(through)
    # Then a signal dated later cannot repeat any of them
    assert not seen.may_have_forgotten(through + CLOCK_SKEW_ALLOWANCE + timedelta(seconds=1), NOW)
    assert not seen.may_have_forgotten(NOW, NOW)
    assert not seen.may_have_forgotten(NOW + CLOCK_SKEW_ALLOWANCE, NOW)


def test_nothing_forgotten_means_no_doubt_at_all() -> None:
    # Given a memory that has not dropped anything
    seen = SeenKeys(capacity=16)
    _fill(seen, "k", 16, NOW, NOW)
    # Then no signal is doubtful: not an old one, not one dated far ahead
    assert not seen.may_have_forgotten(NOW - timedelta(days=365), NOW)
    assert not seen.may_have_forgotten(NOW + timedelta(days=365), NOW)


def test_a_key_dated_ahead_is_kept_apart_until_its_date_then_joins_the_others() -> None:
    # Given a key from a sender whose clock runs a day ahead, then a full memory of others
    seen = SeenKeys(capacity=16)
    seen.remember(digest("from-the-future"), NOW + timedelta(days=1), None, NOW)
    _fill(seen, "k", 32, NOW, NOW)
    # Then it is still known, and what was forgotten is what was received now: nothing
    # dated later than now (and the allowance) is doubtful
    assert digest("from-the-future") in seen
    assert digest("k-0") not in seen
    assert seen.forgotten_through == _millis(NOW)
    assert not seen.may_have_forgotten(NOW + CLOCK_SKEW_ALLOWANCE + timedelta(seconds=1), NOW)
    # When our clock reaches its date, it joins the newest generation, known as long as any
    tomorrow = NOW + timedelta(days=1)
    seen.remember(digest("tick"), tomorrow, None, tomorrow)
    assert digest("from-the-future") in seen
    assert len(seen) == 16
    # And it is forgotten when that generation goes, as received then
    later = tomorrow + timedelta(minutes=1)
    _fill(seen, "later", 16, later, later)
    assert digest("from-the-future") not in seen
    assert seen.forgotten_through == _millis(tomorrow)
    assert seen.may_have_forgotten(tomorrow, later)


def test_more_keys_dated_ahead_than_kept_drop_the_soonest_and_doubt_only_dated_ones() -> None:
    # Given a memory of 16 keys, which keeps 2 dated ahead apart, and three dated hours ahead
    seen = SeenKeys(capacity=16)
    dates = [NOW + timedelta(hours=hours) for hours in (9, 8, 10)]
    for number, date in enumerate(dates):
        seen.remember(digest(f"ahead-{number}"), date, None, NOW)
    # Then the soonest-dated went early and the other two are still known
    assert digest("ahead-1") not in seen
    assert digest("ahead-0") in seen
    assert digest("ahead-2") in seen
    assert seen.ahead_forgotten_through == _millis(dates[1])
    # And a signal dated ahead of our clock up to that date may repeat it, one dated later
    # may not
    assert seen.may_have_forgotten(dates[1], NOW)
    assert seen.may_have_forgotten(NOW + timedelta(minutes=5), NOW)
    assert not seen.may_have_forgotten(dates[1] + timedelta(seconds=1), NOW)
    # While ordinary signals are never doubtful for it
    assert not seen.may_have_forgotten(NOW, NOW)
    assert seen.forgotten_through is None


def test_a_snapshot_of_a_run_before_the_patch_is_read_no_later_than_now() -> None:
    # Given a snapshot written by the rules before the patch: it forgot keys dated up to 10
    # minutes ahead and, by the date of one dropped early, 9 hours ahead; its newest
    # generation is dated 10 minutes ahead; it kept keys dated ahead in and out of it
    old = MemorySnapshot(
        generations=[
            GenerationSnapshot(
                opened_at=int(NOW.timestamp()),
                latest=_millis(NOW + timedelta(minutes=10)),
                keys=base64.b64encode(digest("in-generation").to_bytes(8, "big")).decode(),
                ahead={f"{digest('in-generation'):016x}": _millis(NOW + timedelta(hours=2))},
            )
        ],
        forgotten_through=_millis(NOW + timedelta(hours=9)),
        ahead={f"{digest('dropped-generation'):016x}": _millis(NOW + timedelta(hours=3))},
    )
    # When a run loads it now and its generation is then dropped
    seen = SeenKeys(16, old, loaded_at=NOW)
    assert seen.forgotten_through == _millis(NOW)
    later = NOW + timedelta(minutes=1)
    _fill(seen, "k", 16, later, later)
    # Then nothing it says is later than now: an ordinary signal is not doubtful
    assert seen.forgotten_through == _millis(NOW)
    assert not seen.may_have_forgotten(later, later)
    # And the keys it kept by their dates are still known
    assert digest("in-generation") in seen
    assert digest("dropped-generation") in seen


# --- Identities ---------------------------------------------------------------------------


def test_identities_evict_the_least_recently_touched_at_capacity() -> None:
    # Given three identities, the first touched again last
    identities = Identities(capacity=3)
    for key in ("customer-a", "customer-b", "customer-c"):
        identities.touch(key, NOW)
    identities.touch("customer-a", NOW)
    # When a fourth arrives
    identities.touch("customer-d", NOW)
    # Then the least recently touched one (b) is gone, the others stay
    assert identities.get("customer-b") is None
    assert identities.get("customer-a") is not None
    assert identities.get("customer-c") is not None
    assert identities.get("customer-d") is not None
    assert len(identities) == 3


def test_get_does_not_create_an_identity() -> None:
    # Given no identities
    identities = Identities(capacity=3)
    # When one is looked up
    found = identities.get("customer-a")
    # Then it is not there, and looking did not add it
    assert found is None
    assert len(identities) == 0


def test_equal_markets_are_interned_to_one_object() -> None:
    # Given two identities
    identities = Identities(capacity=10)
    first = identities.touch("customer-a", NOW)
    second = identities.touch("customer-b", NOW)
    # When each is given an equal (but distinct) market
    one = identities.set_market(first, Market(currency="EUR", country="DE"))
    other = identities.set_market(second, Market(currency="EUR", country="DE"))
    # Then both hold the very same object
    assert one is other
    assert first.market is second.market


def test_deleted_flag_version_and_market_survive_a_snapshot() -> None:
    # Given identities with a version, a deletion and markets
    memory = ShardMemory(seen_capacity=16, identity_capacity=10)
    kept = memory.identities.touch("customer-a", NOW)
    kept.version = 7
    memory.identities.set_market(kept, Market(currency="EUR", language="de_DE"))
    gone = memory.identities.touch("customer-b", NOW)
    memory.identities.mark_deleted("customer-b", NOW)
    memory.identities.set_market(gone, Market(currency="EUR", language="de_DE"))
    memory.identities.touch("anonymous-v", NOW)
    # When it is snapshotted and restored
    restored = Identities(10, memory.snapshot(NOW - timedelta(hours=1), NOW))
    # Then every identity's state is as it was
    a = restored.get("customer-a")
    b = restored.get("customer-b")
    v = restored.get("anonymous-v")
    assert a is not None
    assert b is not None
    assert v is not None
    assert (a.version, restored.is_deleted("customer-a")) == (7, False)
    assert (b.version, restored.is_deleted("customer-b")) == (-1, True)
    assert a.market == Market(currency="EUR", language="de_DE")
    assert a.market is b.market  # still interned
    assert v.market == Market()
    assert a.last_seen == int(NOW.timestamp())


def test_snapshot_drops_identities_idle_before_the_cutoff() -> None:
    # Given one identity last seen two hours ago and one seen now
    memory = ShardMemory(seen_capacity=16, identity_capacity=10)
    memory.identities.touch("customer-idle", NOW - timedelta(hours=2))
    memory.identities.touch("customer-active", NOW)
    # When the snapshot keeps those seen in the last hour
    restored = Identities(10, memory.snapshot(NOW - timedelta(hours=1), NOW))
    # Then the idle one is left out
    assert restored.get("customer-idle") is None
    assert restored.get("customer-active") is not None


def test_restored_identities_keep_their_recency_order() -> None:
    # Given identities touched in the order a, b, c, then a again
    memory = ShardMemory(seen_capacity=16, identity_capacity=3)
    for key in ("customer-a", "customer-b", "customer-c", "customer-a"):
        memory.identities.touch(key, NOW)
    restored = ShardMemory(
        seen_capacity=16,
        identity_capacity=3,
        snapshot=memory.snapshot(NOW - timedelta(hours=1), NOW),
        now=NOW,
    )
    # When a new identity arrives after the restore
    restored.identities.touch("customer-d", NOW)
    # Then the least recently seen before the snapshot (b) is evicted
    assert restored.identities.get("customer-b") is None
    assert restored.identities.get("customer-a") is not None


# --- ShardMemory --------------------------------------------------------------------------


def test_shard_memory_round_trip_keeps_keys_forgotten_through_and_identities() -> None:
    # Given a memory that has forgotten some keys and knows some identities
    memory = ShardMemory(seen_capacity=16, identity_capacity=10)
    through = NOW - timedelta(minutes=30)
    _fill(memory.seen, "old", 2, through, through)
    _fill(memory.seen, "new", 15, NOW, NOW)
    state = memory.identities.touch("customer-a", NOW)
    state.version = 3
    memory.identities.mark_deleted("customer-a", NOW)
    memory.identities.set_market(state, Market(channel="app", currency="USD"))
    # When it is snapshotted (through JSON, as Temporal carries it) and restored
    wire = memory.snapshot(NOW - timedelta(hours=1), NOW).model_dump_json()
    snapshot = MemorySnapshot.model_validate_json(wire)
    restored = ShardMemory(seen_capacity=16, identity_capacity=10, snapshot=snapshot, now=NOW)
    # Then the same keys are remembered, the forgotten ones are not
    assert all(digest(f"new-{n}") in restored.seen for n in range(15))
    assert digest("old-0") not in restored.seen
    assert len(restored.seen) == len(memory.seen)
    # And doubt is judged as before
    assert isinstance(restored.seen, SeenKeys)
    assert restored.seen.forgotten_through == _millis(through)
    assert restored.seen.may_have_forgotten(through, NOW)
    assert not restored.seen.may_have_forgotten(NOW, NOW)
    # And the identity's state is kept
    restored_state = restored.identities.get("customer-a")
    assert restored_state is not None
    assert restored_state.version == 3
    assert restored.identities.is_deleted("customer-a")
    assert restored_state.market == Market(channel="app", currency="USD")


def test_restored_memory_keeps_enforcing_its_capacity() -> None:
    # Given a full memory, restored from a snapshot
    memory = ShardMemory(seen_capacity=16, identity_capacity=10)
    _fill(memory.seen, "k", 16, NOW, NOW)
    restored = ShardMemory(
        seen_capacity=16,
        identity_capacity=10,
        snapshot=memory.snapshot(NOW - timedelta(hours=1), NOW),
        now=NOW,
    )
    # When one more key arrives
    restored.seen.remember(digest("k-16"), NOW, None, NOW)
    # Then the oldest generation goes, as it would have without the restore
    assert digest("k-0") not in restored.seen
    assert digest("k-16") in restored.seen
    assert len(restored.seen) == 15


def full_memory(seen_capacity: int, identity_capacity: int, deleted_capacity: int) -> ShardMemory:
    """A memory as large as its capacities let it be: every key in generations (as many as
    it keeps), as many dated ahead as it keeps apart, every identity in a market of its own
    (long values that JSON escapes), every deletion, over the 30 days kept."""
    memory = ShardMemory(
        seen_capacity=seen_capacity,
        identity_capacity=identity_capacity,
        deleted_capacity=deleted_capacity,
    )
    for number in range(seen_capacity):
        memory.seen.remember(digest(f"ahead-{number}"), NOW + timedelta(days=1), None, NOW)
    for number in range(seen_capacity):
        at = NOW + timedelta(seconds=number * 20 * 60 / seen_capacity)  # 20 generations' time
        memory.seen.remember(digest(f"k-{number}"), at, None, at)
    for number in range(identity_capacity):
        state = memory.identities.touch(f"anonymous-{number}", NOW)
        market = Market(channel='"' * 64, store=f"{number:08d}" + "\n" * 248, country="DE")
        memory.identities.set_market(state, market)
    for number in range(deleted_capacity):
        at = NOW - timedelta(days=30) + timedelta(days=30 * number / deleted_capacity)
        memory.identities.mark_deleted(f"customer-{number}", at)
    return memory


def test_a_full_memory_snapshot_stays_within_the_bound_its_capacities_give() -> None:
    # Given a memory filled to every capacity (the shard's defaults)
    capacities = (30_000, 20_000, DELETED_CAPACITY)
    memory = full_memory(*capacities)
    # When it is snapshotted and serialized as Temporal carries it
    snapshot = memory.snapshot(NOW - timedelta(days=1), NOW)
    size = len(to_json(snapshot))
    # Then nothing was left out but markets beyond their share, and it is within its bound
    # (which is not loose: the bound is what the carry budget relies on)
    restored = ShardMemory(
        seen_capacity=capacities[0],
        identity_capacity=capacities[1],
        deleted_capacity=capacities[2],
        snapshot=snapshot,
        now=NOW,
    )
    assert len(restored.seen) == len(memory.seen) == 30_000
    assert len(restored.identities) == 20_000
    assert all(restored.identities.is_deleted(f"customer-{n}") for n in (0, DELETED_CAPACITY - 1))
    assert len(to_json(snapshot.markets)) <= MARKETS_MAX_BYTES
    bound = max_snapshot_bytes(*capacities)
    assert bound * 0.97 < size <= bound


def test_markets_beyond_their_share_are_left_to_the_least_recently_seen() -> None:
    # Given identities each in a market of its own, more than a snapshot carries
    identities = Identities(capacity=1_000)
    for number in range(1_000):
        state = identities.touch(f"anonymous-{number}", NOW)
        identities.set_market(state, Market(store=f"store-{number}-" + "x" * 200))
    # When they are snapshotted and restored
    markets, packed = identities.snapshot(NOW)
    restored = Identities(1_000, MemorySnapshot(markets=markets, identities=packed))
    # Then the most recently seen keep theirs, the least recently seen start without one
    newest = restored.get("anonymous-999")
    oldest = restored.get("anonymous-0")
    assert newest is not None
    assert oldest is not None
    assert newest.market.store is not None
    assert newest.market.store.startswith("store-999-")
    assert oldest.market == Market()


def test_deletions_beyond_their_capacity_forget_the_oldest_also_from_an_earlier_format() -> None:
    # Given a snapshot of a run before the patch: 5 deletions, oldest first
    packed = b"".join(
        struct.pack(">QI", digest(f"customer-{n}"), int(NOW.timestamp()) + n) for n in range(5)
    )
    old = MemorySnapshot(deleted=base64.b64encode(packed).decode())
    # When a memory that keeps 3 reads it, and one more customer is deleted
    identities = Identities(10, old, deleted_capacity=3)
    identities.mark_deleted("customer-5", NOW)
    # Then the latest 3 are remembered
    assert [identities.is_deleted(f"customer-{n}") for n in range(6)] == [
        False,
        False,
        False,
        True,
        True,
        True,
    ]


def test_a_quiet_shard_keeps_a_bounded_number_of_generations() -> None:
    # Given a shard that sees one signal a minute for a week
    seen = SeenKeys(capacity=30_000)
    for minute in range(7 * 24 * 60):
        at = NOW + timedelta(minutes=minute)
        seen.remember(digest(f"k-{minute}"), at, None, at)
    # Then it remembers every key in a bounded number of generations
    assert len(seen.snapshot().generations) <= 16
    assert all(digest(f"k-{m}") in seen for m in (0, 5_000, 10_079))
    assert len(seen) == 10_080


def test_keys_dated_ahead_survive_continue_as_new() -> None:
    # Given a key dated a day ahead, and one more than are kept apart dropped early,
    # carried over continue-as-new
    seen = SeenKeys(capacity=16)
    seen.remember(digest("ahead"), NOW + timedelta(days=1), None, NOW)
    seen.remember(digest("further"), NOW + timedelta(days=2), None, NOW)
    seen.remember(digest("soonest"), NOW + timedelta(hours=1), None, NOW)
    wire = MemorySnapshot.model_validate_json(seen.snapshot().model_dump_json())
    restored = SeenKeys(16, wire, loaded_at=NOW)
    # When the next run fills its memory
    later = NOW + timedelta(minutes=5)
    _fill(restored, "k", 20, later, later)
    # Then they are still known until their date, and what went early still counts
    assert digest("ahead") in restored
    assert digest("further") in restored
    assert restored.ahead_forgotten_through == _millis(NOW + timedelta(hours=1))


def test_a_deletion_outlives_the_identity_among_many_visitors() -> None:
    # Given a deleted customer, then traffic of many more visitors than identities kept
    identities = Identities(capacity=100)
    identities.mark_deleted("customer-gone", NOW)
    for number in range(1_000):
        identities.touch(f"anonymous-{number}", NOW)
    # Then the deletion is still known, across a snapshot too
    assert identities.get("customer-gone") is None
    assert identities.is_deleted("customer-gone")
    restored = Identities(
        capacity=100, snapshot=MemorySnapshot(deleted_on=identities.deleted_snapshot(NOW))
    )
    assert restored.is_deleted("customer-gone")
    # And is remembered for 30 days (to the end of its day), then forgotten
    month = NOW + timedelta(days=30)
    kept = Identities(
        capacity=100, snapshot=MemorySnapshot(deleted_on=restored.deleted_snapshot(month))
    )
    assert kept.is_deleted("customer-gone")
    later = NOW + timedelta(days=31)
    aged = Identities(
        capacity=100, snapshot=MemorySnapshot(deleted_on=kept.deleted_snapshot(later))
    )
    assert not aged.is_deleted("customer-gone")


def test_keys_accepted_while_the_carry_was_completed_join_the_next_run() -> None:
    # Given a carried snapshot, and two signals accepted after it was taken: one dated
    # now, one by a clock a day ahead
    memory = ShardMemory(seen_capacity=16, identity_capacity=10)
    _fill(memory.seen, "k", 4, NOW, NOW)
    carried = memory_with(
        memory.snapshot(NOW - timedelta(hours=1), NOW),
        [("late", NOW, NOW), ("late-ahead", NOW + timedelta(days=1), NOW)],
    )
    # When the next run loads it and fills its memory twice over
    restored = ShardMemory(seen_capacity=16, identity_capacity=10, snapshot=carried, now=NOW)
    assert digest("late") in restored.seen
    later = NOW + timedelta(minutes=1)
    _fill(restored.seen, "next", 32, later, later)
    # Then the one dated now was remembered as any other, the other one until its date
    assert digest("late") not in restored.seen
    assert digest("late-ahead") in restored.seen
