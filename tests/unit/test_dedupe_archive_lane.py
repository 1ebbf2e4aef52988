"""The shard's side of the dedupe archive (ct_insider/journeys/archive_lane.py): what its
memory drops is queued in bounded objects, written, expired and named to deliveries; the
archive covers a forgotten signal only when nothing it may have forgotten is missing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ct_insider.journeys.archive import (
    MAX_KEYS_PER_OBJECT,
    ArchiveView,
    covered,
    object_key,
    unpack,
)
from ct_insider.journeys.archive_lane import (
    MAX_EXPIRED_OBJECTS,
    MAX_WRITTEN_OBJECTS,
    SWEEP_EVERY,
    SWEEP_MARGIN,
    ArchiveLane,
    ArchiveWork,
    max_lane_bytes,
    max_pending_bytes,
    max_pending_keys,
    new_lane,
)
from ct_insider.journeys.memory import (
    CLOCK_SKEW_ALLOWANCE,
    DroppedGeneration,
    SeenKeys,
)
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal, digest

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RETENTION = timedelta(minutes=60)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _lane(max_pending_keys: int = 10**6) -> ArchiveLane:
    return ArchiveLane(
        new_lane("lane1", NOW),
        shard="shard-000",
        retention=RETENTION,
        max_pending_keys=max_pending_keys,
    )


def _dropped(first: int, count: int, at: datetime) -> DroppedGeneration:
    """Keys received up to 10 s after `at`."""
    return DroppedGeneration(
        keys=list(range(first, first + count)), received_through=_ms(at) + 10_000
    )


def _signal(occurred_at: datetime) -> JourneySignal:
    return JourneySignal(
        dedupe_key="event:e-1",
        kind="storefront",
        type="product_view",
        occurred_at=occurred_at,
        identity=JourneyIdentity(anonymous_id="v-1"),
    )


def test_the_memory_hands_every_dropped_generation_to_its_listener() -> None:
    # Given a small memory whose drops are listened to
    seen = SeenKeys(16)
    dropped: list[DroppedGeneration] = []
    seen.on_drop = dropped.append
    # When more keys arrive than it holds, received a second apart (dated a day earlier:
    # the sender's date does not matter)
    for key in range(20):
        at = NOW + timedelta(seconds=key)
        seen.remember(key, at - timedelta(days=1), at, at)
    # Then each generation it let go of is handed out with its keys, sorted, and when the
    # newest was received on our clock - what the memory now says it forgot through
    assert [g.keys for g in dropped] == [[0, 1], [2, 3]]
    assert dropped[-1].received_through == _ms(NOW) + 3_000 == seen.forgotten_through
    assert all(key not in seen for g in dropped for key in g.keys)


def test_a_key_dated_ahead_is_archived_only_once_released_into_a_generation() -> None:
    # Given a small memory whose drops are listened to, holding a key dated an hour ahead
    seen = SeenKeys(16)
    dropped: list[DroppedGeneration] = []
    seen.on_drop = dropped.append
    ahead = digest("ahead")
    seen.remember(ahead, NOW + timedelta(hours=1), NOW, NOW)
    # When the memory turns over several times before its date
    for key in range(40):
        at = NOW + timedelta(seconds=key)
        seen.remember(key, at, at, at)
    # Then it was never dropped (kept apart, recognised)
    assert ahead in seen
    assert all(ahead not in g.keys for g in dropped)
    # And once receipt times reach its date it joins a generation as received then, and is
    # archived with it when that generation goes
    later = NOW + timedelta(hours=1)
    for key in range(100, 140):
        at = later + timedelta(seconds=key)
        seen.remember(key, at, at, at)
    [holding] = [g for g in dropped if ahead in g.keys]
    assert holding.received_through >= _ms(later)


def test_a_large_generation_is_cut_into_bounded_numbered_objects() -> None:
    # Given a lane
    lane = _lane()
    # When a generation larger than one object may hold is dropped
    lane.queue(_dropped(0, MAX_KEYS_PER_OBJECT + 5, NOW))
    work = lane.work(NOW)
    # Then it is written as two objects, numbered in the lane, holding every key once
    assert [g.key for g in work.writes] == [object_key("lane1", 0), object_key("lane1", 1)]
    assert [g.key_count for g in work.writes] == [MAX_KEYS_PER_OBJECT, 5]
    keys = [key for g in work.writes for key in unpack(g.keys)]
    assert keys == list(range(MAX_KEYS_PER_OBJECT + 5))


def test_nothing_is_covered_while_a_write_is_pending() -> None:
    # Given a lane started now
    lane = _lane()
    # Then it covers what is received from now on (what was forgotten before, or taken by a
    # shard of an earlier start, is not archived)
    assert lane.covers_from() == _ms(NOW) + 1
    # When a dropped generation is queued, not yet written
    lane.queue(_dropped(0, 10, NOW))
    # Then a view names no object and covers nothing
    assert lane.view(NOW).covered_from is None
    # When the write is done
    lane.done(lane.work(NOW))
    # Then the coverage is back, and the object is named
    assert lane.covers_from() == _ms(NOW) + 1
    assert lane.view(NOW).sequences == [0]
    assert lane.work(NOW).empty()


def test_a_full_queue_gives_up_its_oldest_objects_and_their_coverage() -> None:
    # Given a lane that may queue 20 keys while commercetools is down
    lane = _lane(max_pending_keys=20)
    lane.queue(_dropped(0, 10, NOW))
    lane.done(lane.work(NOW))
    # When three generations of 10 keys are dropped without being written
    later = NOW + timedelta(minutes=1)
    for number in range(3):
        lane.queue(_dropped(100 + 10 * number, 10, later + timedelta(seconds=number)))
    work = lane.work(later)
    # Then the queue holds two (the oldest generation was given up), and once written the
    # archive covers only what was received after the given-up generation
    assert [g.sequence for g in work.writes] == [2, 3]
    lane.done(work)
    assert lane.covers_from() == _ms(later) + 10_000 + 1


def test_a_lane_remembers_a_bounded_number_of_written_objects() -> None:
    # Given a lane that wrote as many objects as it remembers
    lane = _lane()
    for number in range(MAX_WRITTEN_OBJECTS):
        lane.queue(_dropped(number, 1, NOW + timedelta(seconds=number)))
    lane.done(lane.work(NOW))
    assert lane.view(NOW).sequences == list(range(MAX_WRITTEN_OBJECTS))
    # When one more is written
    lane.queue(_dropped(10**6, 1, NOW + timedelta(seconds=MAX_WRITTEN_OBJECTS)))
    lane.done(lane.work(NOW))
    # Then the oldest is given up: no longer named, and no longer covered
    assert lane.view(NOW).sequences == list(range(1, MAX_WRITTEN_OBJECTS + 1))
    assert lane.covers_from() == _ms(NOW) + 10_000 + 1


def test_a_queue_of_objects_with_a_long_shard_id_is_bounded_by_bytes_too() -> None:
    # Given a lane of a shard with a workflow id of 1,000 characters, commercetools down
    lane = ArchiveLane(
        new_lane("lane1", NOW), shard="s" * 1_000, retention=RETENTION, max_pending_keys=100
    )
    # When a hundred one-key generations are dropped (within the queue's 100 keys)
    for number in range(100):
        lane.queue(_dropped(number, 1, NOW + timedelta(seconds=number)))
    # Then the oldest were given up to keep the queue's JSON within its bound
    queued = lane.snapshot().queued
    assert sum(len(g.model_dump_json()) + 1 for g in queued) <= max_pending_bytes(100)
    assert 0 < len(queued) < 100
    assert lane.covers_from() is None
    lane.done(lane.work(NOW))
    assert lane.covers_from() == _ms(NOW) + (99 - len(queued)) * 1_000 + 10_000 + 1


def test_objects_expire_after_the_retention_and_coverage_moves_past_them() -> None:
    # Given two archived generations, ten minutes apart
    lane = _lane()
    lane.queue(_dropped(0, 10, NOW))
    lane.queue(_dropped(10, 10, NOW + timedelta(minutes=10)))
    lane.done(lane.work(NOW + timedelta(minutes=10)))
    # When the retention has passed for the first one only
    later = NOW + RETENTION + timedelta(minutes=1)
    work = lane.work(later)
    # Then it is deleted, no longer named, and coverage starts after it
    assert work.deletes == [object_key("lane1", 0)]
    lane.done(work)
    assert lane.view(NOW).sequences == [1]
    assert lane.covers_from() == _ms(NOW) + 10_000 + 1
    assert lane.work(later).empty()


def test_a_delivery_is_named_only_the_objects_that_may_hold_its_signals() -> None:
    # Given generations archived an hour and a minute ago
    lane = _lane()
    lane.queue(_dropped(0, 10, NOW - timedelta(hours=1)))
    lane.queue(_dropped(10, 10, NOW - timedelta(minutes=1)))
    lane.done(lane.work(NOW - timedelta(minutes=1)))
    # When a delivery's oldest forgotten signal happened five minutes ago
    view = lane.view(NOW - timedelta(minutes=5))
    # Then only the recent object may hold it (it was received no earlier than its date
    # minus the clock-skew allowance)
    assert view.sequences == [1]


def test_a_signal_is_covered_only_if_its_earliest_possible_receipt_is() -> None:
    # Given an archive that covers what was received from NOW
    view = ArchiveView(lane="lane1", sequences=[], covered_from=_ms(NOW))
    # Then a signal dated the skew allowance (2 s) after it is covered, one a millisecond
    # earlier not, and nothing is covered by a view without coverage
    assert covered(view, _signal(NOW + CLOCK_SKEW_ALLOWANCE))
    assert not covered(view, _signal(NOW + CLOCK_SKEW_ALLOWANCE - timedelta(milliseconds=1)))
    assert not covered(view.model_copy(update={"covered_from": None}), _signal(NOW))


def full_lane(seen_capacity: int, shard: str = "shard-000") -> ArchiveLane:
    """A lane of a memory of this capacity at its largest: its queue full (one full object
    beside one-key objects, commercetools down), as many written objects as it remembers
    and as many expired ones whose deletes keep failing."""
    lane = ArchiveLane(
        new_lane("lane1", NOW),
        shard=shard,
        retention=RETENTION,
        max_pending_keys=max_pending_keys(seen_capacity),
    )
    for number in range(MAX_WRITTEN_OBJECTS * 2):
        lane.queue(_dropped(number, 1, NOW + timedelta(seconds=number)))
        lane.done(lane.work(NOW))
    lane.work(NOW + RETENTION + timedelta(hours=1))  # all expired, none deleted yet
    for number in range(MAX_WRITTEN_OBJECTS):
        lane.queue(_dropped(number, 1, NOW + RETENTION + timedelta(hours=1, seconds=number)))
        lane.done(ArchiveWork(writes=lane.work(NOW).writes))  # the deletes keep failing
    lane.queue(_dropped(0, seen_capacity // 4, NOW + timedelta(hours=3)))
    for number in range(seen_capacity // 4):
        lane.queue(_dropped(10**7 + number, 1, NOW + timedelta(hours=3)))
    return lane


def test_a_full_lane_takes_at_most_its_bound_in_the_carry() -> None:
    # Given a lane of a default memory at its largest
    lane = full_lane(30_000)
    state = lane.snapshot()
    assert len(state.written) == MAX_WRITTEN_OBJECTS
    assert len(state.expired) == MAX_EXPIRED_OBJECTS
    # Then its snapshot stays within the bound the shard's settings count (and close to it)
    assert max_lane_bytes(30_000) * 0.9 < lane.carried_bytes() <= max_lane_bytes(30_000)
    assert len(state.model_dump_json()) == lane.carried_bytes()


def test_long_expired_objects_of_any_lane_are_swept_every_hour() -> None:
    # Given a lane started now
    lane = _lane()
    assert lane.work(NOW + timedelta(minutes=59)).empty()
    # Then an hour later its bookkeeping sweeps what expired an hour before, whatever its lane
    later = NOW + timedelta(milliseconds=SWEEP_EVERY)
    sweep = lane.work(later)
    assert sweep.sweep_before == int(later.timestamp() * 1000) - SWEEP_MARGIN
    lane.done(sweep)
    # And the next time an hour after that
    assert lane.work(later + timedelta(minutes=59)).empty()
    assert lane.work(later + timedelta(hours=1)).sweep_before is not None
