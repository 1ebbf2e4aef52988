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
    SWEEP_EVERY,
    SWEEP_MARGIN,
    ArchiveLane,
    new_lane,
)
from ct_insider.journeys.memory import CLOCK_SKEW, DroppedGeneration, SeenKeys
from ct_insider.journeys.signals import JourneyIdentity, JourneySignal

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RETENTION = timedelta(minutes=60)


def _lane(max_pending_keys: int = 100_000, ahead_until: int = 0) -> ArchiveLane:
    return ArchiveLane(
        new_lane("lane1", ahead_until=ahead_until, now=NOW),
        shard="shard-000",
        retention=RETENTION,
        max_pending_keys=max_pending_keys,
    )


def _dropped(first: int, count: int, at: datetime, ahead_until: int = 0) -> DroppedGeneration:
    second = int(at.timestamp())
    return DroppedGeneration(
        keys=list(range(first, first + count)),
        accepted_from=second,
        accepted_through=second + 10,
        ahead_until=ahead_until,
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
    # When more keys arrive than it holds, a second apart
    for key in range(20):
        seen.add(key, NOW, NOW + timedelta(seconds=key))
    # Then each generation it let go of is handed out with its keys, sorted, and when
    # they were accepted on our clock (until the next generation opened)
    assert [g.keys for g in dropped] == [[0, 1], [2, 3]]
    assert dropped[0].accepted_from == int(NOW.timestamp())
    assert dropped[0].accepted_through == int(NOW.timestamp()) + 2
    assert all(key not in seen for g in dropped for key in g.keys)


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
    # Given a lane with a dropped generation not yet written
    lane = _lane()
    lane.queue(_dropped(0, 10, NOW))
    # Then a view names no object and covers nothing
    assert lane.view(NOW).covered_from is None
    # When the write is done
    work = lane.work(NOW)
    lane.done(work)
    # Then the lane covers from the second after the first archived generation began
    # (keys forgotten before it, in that very second too, were never archived)
    assert lane.covers_from() == int(NOW.timestamp()) + 1
    assert lane.view(NOW).sequences == [0]
    assert lane.work(NOW).empty()


def test_coverage_starts_after_what_the_memory_kept_for_future_dates_before_archiving() -> None:
    # Given a lane started while the memory kept keys dated up to an hour ahead
    ahead = int((NOW + timedelta(hours=1)).timestamp())
    lane = _lane(ahead_until=ahead * 1000)
    lane.queue(_dropped(0, 10, NOW))
    lane.done(lane.work(NOW))
    # Then coverage starts after that date, not at the first archived generation
    assert lane.covers_from() == ahead + 1


def test_a_full_queue_gives_up_its_oldest_objects_and_their_coverage() -> None:
    # Given a lane that may queue 20 keys while commercetools is down
    lane = _lane(max_pending_keys=20)
    lane.queue(_dropped(0, 10, NOW))
    lane.done(lane.work(NOW))
    covered_before = lane.covers_from()
    # When three generations of 10 keys are dropped without being written
    later = NOW + timedelta(minutes=1)
    for number in range(3):
        lane.queue(_dropped(100 + 10 * number, 10, later + timedelta(seconds=number)))
    work = lane.work(later)
    # Then the queue holds at most 20 keys (the oldest generation was given up), and once
    # written the archive covers only what came after the given-up generation
    assert [g.sequence for g in work.writes] == [2, 3]
    lane.done(work)
    assert covered_before is not None
    assert lane.covers_from() == int(later.timestamp()) + 10 + 1


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
    assert lane.covers_from() == int(NOW.timestamp()) + 10 + 1
    assert lane.work(later).empty()


def test_an_object_with_a_key_dated_ahead_is_kept_until_the_retention_after_that_date() -> None:
    # Given an archived generation holding a key a fast clock dated two hours ahead
    ahead = NOW + timedelta(hours=2)
    lane = _lane()
    lane.queue(_dropped(0, 10, NOW, ahead_until=int(ahead.timestamp() * 1000)))
    lane.done(lane.work(NOW))
    # Then it outlives the retention of its acceptance, and is named to a delivery of a
    # signal dated then
    assert lane.work(NOW + RETENTION + timedelta(minutes=30)).deletes == []
    assert lane.view(ahead).sequences == [0]
    # And goes once the retention has passed after that date
    assert lane.work(ahead + RETENTION + timedelta(seconds=1)).deletes == [object_key("lane1", 0)]


def test_a_delivery_is_named_only_the_objects_that_may_hold_its_signals() -> None:
    # Given generations archived an hour and a minute ago
    lane = _lane()
    lane.queue(_dropped(0, 10, NOW - timedelta(hours=1)))
    lane.queue(_dropped(10, 10, NOW - timedelta(minutes=1)))
    lane.done(lane.work(NOW - timedelta(minutes=1)))
    # When a delivery's oldest forgotten signal happened five minutes ago
    view = lane.view(NOW - timedelta(minutes=5))
    # Then only the recent object may hold it (it was accepted no earlier than its date
    # minus the clock-skew allowance)
    assert view.sequences == [1]


def test_a_signal_is_covered_only_if_its_earliest_possible_acceptance_is() -> None:
    # Given an archive that covers from NOW
    view = ArchiveView(lane="lane1", sequences=[], covered_from=int(NOW.timestamp()))
    # Then a signal dated a skew allowance after it is covered, one a second earlier not,
    # and nothing is covered by a view without coverage
    assert covered(view, _signal(NOW + CLOCK_SKEW))
    assert not covered(view, _signal(NOW + CLOCK_SKEW - timedelta(seconds=1)))
    assert not covered(view.model_copy(update={"covered_from": None}), _signal(NOW))


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
