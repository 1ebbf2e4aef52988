"""A journey shard's memory: bounded dedupe keys, per-identity state, compact snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ct_insider.journeys.memory import (
    CLOCK_SKEW,
    Identities,
    MemorySnapshot,
    SeenKeys,
    ShardMemory,
)
from ct_insider.journeys.signals import Market, digest

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC)


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _fill(seen: SeenKeys, prefix: str, count: int, occurred_at: datetime, now: datetime) -> None:
    for number in range(count):
        seen.add(digest(f"{prefix}-{number}"), occurred_at, now)


# --- SeenKeys ---------------------------------------------------------------------------


def test_added_keys_are_remembered_and_others_are_not() -> None:
    # Given an empty memory
    seen = SeenKeys(capacity=100)
    # When two keys are added
    seen.add(digest("event-1"), NOW, NOW)
    seen.add(digest("event-2"), NOW, NOW)
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
    seen.add(digest("k-16"), NOW, NOW)
    # Then the oldest generation (the first two keys) is gone and the rest stays
    assert digest("k-0") not in seen
    assert digest("k-1") not in seen
    assert all(digest(f"k-{n}") in seen for n in range(2, 17))
    assert len(seen) == 15
    assert seen.forgotten_through is not None


def test_forgotten_through_is_the_latest_occurrence_among_dropped_keys() -> None:
    # Given a first generation whose keys happened at different moments (neither the
    # earliest nor the order of arrival decides), and later keys that happened later still
    seen = SeenKeys(capacity=16)
    seen.add(digest("early"), NOW - timedelta(minutes=5), NOW)
    seen.add(digest("late"), NOW - timedelta(minutes=1), NOW)
    _fill(seen, "later", 14, NOW, NOW)
    # When the memory overflows and the first generation is dropped
    seen.add(digest("overflow"), NOW, NOW)
    # Then forgotten_through is the latest moment among the dropped keys
    assert digest("early") not in seen
    assert seen.forgotten_through == _millis(NOW - timedelta(minutes=1))


def _with_forgotten(through: datetime) -> SeenKeys:
    """A memory that forgot keys that happened no later than `through`."""
    seen = SeenKeys(capacity=16)
    _fill(seen, "old", 2, through, NOW)
    _fill(seen, "new", 15, NOW, NOW)
    assert seen.forgotten_through == _millis(through)
    return seen


def test_may_have_forgotten_a_signal_at_or_before_forgotten_through() -> None:
    # Given a memory that forgot keys of signals that happened up to an hour ago
    through = NOW - timedelta(hours=1)
    seen = _with_forgotten(through)
    # Then a signal that happened then, or before, may repeat a forgotten one
    assert seen.may_have_forgotten(through)
    assert seen.may_have_forgotten(through - timedelta(days=3))


def test_cannot_have_forgotten_a_signal_after_forgotten_through() -> None:
    # Given a memory that forgot keys of signals that happened up to an hour ago
    through = NOW - timedelta(hours=1)
    seen = _with_forgotten(through)
    # Then a signal that happened just after cannot repeat any of them
    assert not seen.may_have_forgotten(through + timedelta(milliseconds=1))
    assert not seen.may_have_forgotten(NOW)
    assert not seen.may_have_forgotten(NOW + CLOCK_SKEW)


def test_nothing_forgotten_means_no_doubt_at_all() -> None:
    # Given a memory that has not dropped anything
    seen = SeenKeys(capacity=16)
    _fill(seen, "k", 16, NOW, NOW)
    # Then no signal is doubtful: not an old one, not one dated far ahead
    assert not seen.may_have_forgotten(NOW - timedelta(days=365))
    assert not seen.may_have_forgotten(NOW + timedelta(days=365))


def test_a_sender_clock_far_ahead_keeps_its_key_and_does_not_push_forgotten_through() -> None:
    # Given a key from a sender whose clock runs a day ahead, arriving at NOW
    seen = SeenKeys(capacity=16)
    seen.add(digest("from-the-future"), NOW + timedelta(days=1), NOW)
    seen.add(digest("ordinary"), NOW, NOW)
    _fill(seen, "later", 14, NOW, NOW)
    # When its generation is dropped
    later = NOW + timedelta(minutes=5)
    seen.add(digest("overflow"), later, later)
    # Then its key is still known until its stated time has come
    assert digest("from-the-future") in seen
    assert digest("ordinary") not in seen
    # And forgotten_through only covers what happened by a sane clock
    assert seen.forgotten_through == _millis(NOW)
    sane = NOW + timedelta(seconds=1)
    assert not seen.may_have_forgotten(sane)
    # When its stated time has passed, it is forgotten like the others
    tomorrow = NOW + timedelta(days=1, seconds=1)
    seen.add(digest("tick"), tomorrow, tomorrow)
    assert digest("from-the-future") not in seen
    assert seen.may_have_forgotten(NOW + timedelta(days=1))


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
    _fill(memory.seen, "old", 2, through, NOW)
    _fill(memory.seen, "new", 15, NOW, NOW)
    state = memory.identities.touch("customer-a", NOW)
    state.version = 3
    memory.identities.mark_deleted("customer-a", NOW)
    memory.identities.set_market(state, Market(channel="app", currency="USD"))
    # When it is snapshotted (through JSON, as Temporal carries it) and restored
    wire = memory.snapshot(NOW - timedelta(hours=1), NOW).model_dump_json()
    snapshot = MemorySnapshot.model_validate_json(wire)
    restored = ShardMemory(seen_capacity=16, identity_capacity=10, snapshot=snapshot)
    # Then the same keys are remembered, the forgotten ones are not
    assert all(digest(f"new-{n}") in restored.seen for n in range(15))
    assert digest("old-0") not in restored.seen
    assert len(restored.seen) == len(memory.seen)
    # And doubt is judged as before
    assert restored.seen.forgotten_through == _millis(through)
    assert restored.seen.may_have_forgotten(through)
    assert not restored.seen.may_have_forgotten(NOW)
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
    )
    # When one more key arrives
    restored.seen.add(digest("k-16"), NOW, NOW)
    # Then the oldest generation goes, as it would have without the restore
    assert digest("k-0") not in restored.seen
    assert digest("k-16") in restored.seen
    assert len(restored.seen) == 15


def test_snapshot_of_a_busy_shard_fits_well_within_a_temporal_payload() -> None:
    # Given 30,000 remembered keys and 20,000 identities in a handful of markets
    memory = ShardMemory(seen_capacity=30_000, identity_capacity=20_000)
    _fill(memory.seen, "event", 30_000, NOW, NOW)
    markets = [
        Market(channel="web", currency=currency, language=language, country=country)
        for currency, language, country in (
            ("EUR", "de_DE", "DE"),
            ("EUR", "fr_FR", "FR"),
            ("USD", "en_US", "US"),
            ("GBP", "en_GB", "GB"),
            ("CHF", "de_CH", "CH"),
        )
    ]
    for number in range(20_000):
        state = memory.identities.touch(f"anonymous-{number}", NOW)
        memory.identities.set_market(state, markets[number % len(markets)])
    # When it is snapshotted and serialized
    snapshot = memory.snapshot(NOW - timedelta(hours=1), NOW)
    payload = snapshot.model_dump_json()
    # Then nothing was left out, markets are interned, and it is under 1.2 MB
    assert len(memory.seen) == 30_000
    assert len(snapshot.markets) == len(markets)
    assert len(Identities(20_000, snapshot)) == 20_000
    assert len(payload.encode()) < 1_200_000


def test_a_quiet_shard_keeps_a_bounded_number_of_generations() -> None:
    # Given a shard that sees one signal a minute for a week
    seen = SeenKeys(capacity=30_000)
    for minute in range(7 * 24 * 60):
        at = NOW + timedelta(minutes=minute)
        seen.add(digest(f"k-{minute}"), at, at)
    # Then it remembers every key in a bounded number of generations
    generations, _, _ = seen.snapshot()
    assert len(generations) <= 16
    assert all(digest(f"k-{m}") in seen for m in (0, 5_000, 10_079))
    assert len(seen) == 10_080


def test_future_dated_keys_of_a_live_generation_survive_continue_as_new() -> None:
    # Given a key dated a day ahead, still in its generation, carried over continue-as-new
    seen = SeenKeys(capacity=16)
    seen.add(digest("ahead"), NOW + timedelta(days=1), NOW)
    generations, through, ahead = seen.snapshot()
    restored = SeenKeys(
        capacity=16,
        snapshot=MemorySnapshot(generations=generations, forgotten_through=through, ahead=ahead),
    )
    # When its generation is dropped in the next run
    later = NOW + timedelta(minutes=5)
    for number in range(20):
        restored.add(digest(f"k-{number}"), later, later)
    # Then it is still known until its stated time
    assert digest("ahead") in restored


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
        capacity=100, snapshot=MemorySnapshot(deleted=identities.deleted_snapshot(NOW))
    )
    assert restored.is_deleted("customer-gone")
    # And is forgotten after 30 days
    later = NOW + timedelta(days=31)
    aged = Identities(
        capacity=100, snapshot=MemorySnapshot(deleted=identities.deleted_snapshot(later))
    )
    assert not aged.is_deleted("customer-gone")
