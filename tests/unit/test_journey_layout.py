"""Resharding rules: which shard owns, holds or forwards an identity's signals during a
change, what a handoff carries, and that it fits Temporal's payload limit at worst."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from ct_insider.journeys.layout import (
    HANDOFF_MAX_BYTES,
    HandoffPart,
    Layout,
    LayoutChange,
    LayoutStatus,
    Placement,
    ShardLayout,
)
from ct_insider.journeys.memory import (
    DELETED_CAPACITY,
    MemorySnapshot,
    SeenKeys,
    ShardMemory,
    split_handoff,
)
from ct_insider.journeys.sender_clock_keys import SenderClockSeenKeys
from ct_insider.journeys.signals import Market, digest, shard_of

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CHANGE = LayoutChange(epoch=1, old_shards=4, new_shards=8, handoff_at=NOW)


def identity_moving(old: int, new: int) -> str:
    """A routing key owned by shard `old` of 4 and shard `new` of 8."""
    for number in range(10_000):
        key = f"anonymous-v-{number}"
        if shard_of(key, 4) == old and shard_of(key, 8) == new:
            return key
    raise AssertionError("no such identity")


def test_shard_of_is_the_memory_digest_modulo_the_shard_count() -> None:
    # Given any routing key, Then its shard is its memory digest modulo the count
    for key in ("customer-1", "anonymous-v-2", "email-3"):
        assert shard_of(key, 8) == digest(key) % 8


def test_a_new_owner_holds_a_moving_identity_until_its_old_owner_handed_off() -> None:
    # Given shard 5 of 8, told of the change 4 -> 8
    layout = ShardLayout()
    assert layout.learn(CHANGE, 5)
    moving = identity_moving(1, 5)
    # Then a signal of an identity moving from shard 1 is held
    assert layout.place(5, moving) == (Placement.HOLD, 5)
    # When shard 1's two parts are in
    for index in range(2):
        part = HandoffPart(change=CHANGE, sender=1, index=index, count=2, memory=MemorySnapshot())
        assert layout.receive(part)
        # (a part sent again is not taken twice)
        assert not layout.receive(part)
    # Then the identity is owned here
    assert layout.place(5, moving) == (Placement.OWN, 5)


def test_an_old_owner_keeps_a_moving_identity_until_its_handoff_then_forwards() -> None:
    # Given shard 1 of 4, told of the change 4 -> 8
    layout = ShardLayout()
    layout.learn(CHANGE, 1)
    moving, staying = identity_moving(1, 5), identity_moving(1, 1)
    # Then before its handoff both identities are its own
    assert layout.place(1, moving) == (Placement.OWN, 5)
    assert layout.place(1, staying) == (Placement.OWN, 1)
    assert layout.handoff_due(NOW)
    assert not layout.handoff_due(NOW - timedelta(seconds=1))
    # When it handed off, Then the moved identity's signals are forwarded to shard 5
    layout.handed_off = True
    assert layout.place(1, moving) == (Placement.FORWARD, 5)
    assert layout.place(1, staying) == (Placement.OWN, 1)


def test_a_shard_not_in_the_old_layout_has_nothing_to_hand_off() -> None:
    layout = ShardLayout()
    layout.learn(CHANGE, 6)
    assert layout.handed_off
    assert CHANGE.receivers(6) == []


@pytest.mark.parametrize(("old", "new"), [(4, 8), (8, 4), (4, 6), (3, 5), (2, 1), (1, 3)])
def test_a_shard_hands_off_to_exactly_the_shards_its_identities_can_move_to(
    old: int, new: int
) -> None:
    # Given a change and many identities
    change = LayoutChange(epoch=1, old_shards=old, new_shards=new, handoff_at=NOW)
    moves = {
        (shard_of(key, old), shard_of(key, new)) for key in (f"customer-{n}" for n in range(5_000))
    }
    # Then each old shard hands off to exactly the shards its identities move to
    for shard in range(max(old, new)):
        assert change.receivers(shard) == sorted({b for a, b in moves if a == shard != b})


def test_the_same_change_announced_again_later_postpones_the_handoff_only() -> None:
    layout = ShardLayout()
    layout.learn(CHANGE, 1)
    layout.parts = {2: [0]}
    later = CHANGE.model_copy(update={"handoff_at": NOW + timedelta(seconds=9)})
    assert not layout.learn(later, 1)
    assert layout.change == later
    assert layout.parts == {2: [0]}
    assert not layout.learn(CHANGE, 1)
    assert layout.change == later


def test_bridges_route_by_the_next_layout_from_its_moment() -> None:
    status = LayoutStatus(
        current=Layout(shards=4),
        next=Layout(epoch=1, shards=8, effective_at=NOW),
        change=CHANGE.model_copy(update={"handoff_at": NOW + timedelta(seconds=1)}),
    )
    assert status.in_effect(NOW - timedelta(milliseconds=1)).shards == 4
    assert status.in_effect(NOW).shards == 8


def _seen(memory: ShardMemory) -> SeenKeys:
    assert isinstance(memory.seen, SeenKeys)
    return memory.seen


def _busy_memory() -> ShardMemory:
    """A full memory: keys received over 5 minutes (our clock), some dated ahead."""
    memory = ShardMemory(seen_capacity=30_000, identity_capacity=20_000)
    for number in range(30_000):
        received = NOW + timedelta(seconds=number // 100)
        memory.seen.remember(digest(f"event-{number}"), NOW, None, received)
    for number in range(100):
        memory.seen.remember(digest(f"ahead-{number}"), NOW + timedelta(hours=1), None, NOW)
    for number in range(20_000):
        state = memory.identities.touch(f"anonymous-{number}", NOW)
        market = Market(channel=f"web-{number}", currency="EUR", store=f"store-{number}" * 3)
        memory.identities.set_market(state, market)
        state.version = number
    for number in range(DELETED_CAPACITY):
        memory.identities.mark_deleted(f"customer-{number}", NOW)
    return memory


def test_a_handoff_carries_every_key_and_only_the_moving_identities() -> None:
    # Given a busy old shard 1 of 4
    memory = _busy_memory()
    # When it hands off to shard 5 of 8
    handoff = memory.handoff(CHANGE.moves_to(5), NOW - timedelta(days=1), NOW)
    receiver = ShardMemory(seen_capacity=30_000, identity_capacity=20_000)
    receiver.inherit(handoff, NOW + timedelta(minutes=10))
    # Then the receiver knows every key, and exactly the identities owned by shard 5
    assert all(digest(f"event-{n}") in receiver.seen for n in range(0, 30_000, 97))
    assert all(digest(f"ahead-{n}") in receiver.seen for n in range(100))
    moving = [n for n in range(20_000) if shard_of(f"anonymous-{n}", 8) == 5]
    assert len(receiver.identities) == len(moving)
    state = receiver.identities.get(f"anonymous-{moving[0]}")
    assert state is not None
    assert state.version == moving[0]
    deleted = [n for n in range(DELETED_CAPACITY) if shard_of(f"customer-{n}", 8) == 5]
    assert all(receiver.identities.is_deleted(f"customer-{n}") for n in deleted)
    assert not receiver.identities.is_deleted(
        f"customer-{next(iter(set(range(9)) - set(deleted)))}"
    )


def test_a_worst_case_handoff_splits_into_parts_that_fit_a_signal_and_lose_nothing() -> None:
    # Given the largest memory a shard keeps, every identity moving (a shrink to one shard)
    memory = _busy_memory()
    _seen(memory).forgotten_through = 123
    _seen(memory).ahead_forgotten_through = 456
    handoff = memory.handoff(lambda _: True, NOW - timedelta(days=1), NOW)
    # When it is split
    parts = split_handoff(handoff, HANDOFF_MAX_BYTES)
    # Then every part's signal fits the bound (Temporal refuses over 2 MB) ...
    part_sizes = [
        len(HandoffPart(change=CHANGE, sender=1, index=0, count=9, memory=p).model_dump_json())
        for p in parts
    ]
    assert len(parts) > 1
    assert max(part_sizes) <= HANDOFF_MAX_BYTES
    # ... and inheriting all parts is inheriting the whole
    whole = ShardMemory(seen_capacity=30_000, identity_capacity=20_000)
    whole.inherit(handoff, NOW + timedelta(minutes=10))
    pieces = ShardMemory(seen_capacity=30_000, identity_capacity=20_000)
    for part in parts:
        pieces.inherit(part, NOW + timedelta(minutes=10))
    assert _keys(pieces) == _keys(whole)
    assert len(_keys(whole)) == 30_000
    for number in range(20_000):
        assert pieces.identities.get(f"anonymous-{number}") == whole.identities.get(
            f"anonymous-{number}"
        )
    assert pieces.identities.deleted_snapshot(NOW) == whole.identities.deleted_snapshot(NOW)
    assert pieces.seen.snapshot().ahead_keys == whole.seen.snapshot().ahead_keys
    assert _seen(pieces).forgotten_through == 123
    assert _seen(pieces).ahead_forgotten_through == 456


def _keys(memory: ShardMemory) -> set[bytes]:
    return {
        raw[i : i + 8]
        for generation in memory.snapshot(NOW - timedelta(days=1), NOW).generations
        for raw in [base64.b64decode(generation.keys)]
        for i in range(0, len(raw), 8)
    }


@pytest.mark.parametrize("own_keys", [0, 10_000])
def test_inherited_keys_beyond_the_capacity_are_forgotten_as_usual(own_keys: int) -> None:
    # Given a receiver that already remembers some keys
    receiver = ShardMemory(seen_capacity=30_000, identity_capacity=100)
    later = NOW + timedelta(hours=1)
    for number in range(own_keys):
        receiver.seen.remember(digest(f"own-{number}"), later, None, later)
    # When it inherits a full memory of older keys
    receiver.inherit(_busy_memory().handoff(lambda _: False, NOW, NOW), later)
    # Then it stays within its capacity, keeps its own keys, and what it could not keep
    # makes a redelivery of that age doubtful, never a silent duplicate
    assert len(receiver.seen) <= 30_000
    assert all(digest(f"own-{n}") in receiver.seen for n in range(own_keys))
    if own_keys:
        # ... measured by when the forgotten keys were received (our clock): a signal
        # dated after the last of them was received cannot repeat one of them
        seen = _seen(receiver)
        assert seen.may_have_forgotten(NOW, later)
        assert seen.forgotten_through is not None
        assert seen.forgotten_through <= (NOW + timedelta(seconds=300)).timestamp() * 1000
        assert not seen.may_have_forgotten(NOW + timedelta(seconds=310), later)


def test_inherited_receipt_times_are_never_later_than_the_receivers_clock() -> None:
    # Given a handoff whose keys state receipt times ahead of the receiver's clock
    handoff = _busy_memory().handoff(lambda _: False, NOW, NOW)
    receiver = ShardMemory(seen_capacity=30_000, identity_capacity=100)
    # When it is merged before the receiver's clock reached them, then pushed out
    receiver.inherit(handoff, NOW + timedelta(seconds=10))
    for number in range(30_000):
        at = NOW + timedelta(seconds=20)
        receiver.seen.remember(digest(f"own-{number}"), at, None, at)
    # Then what it forgot is dated no later than its clock at the merge
    forgotten = _seen(receiver).forgotten_through
    assert forgotten is not None
    assert forgotten <= (NOW + timedelta(seconds=10)).timestamp() * 1000


def test_a_run_on_the_senders_clock_moves_its_keys_to_ours_when_it_inherits() -> None:
    # Given a shard run begun before `shard-memory-on-our-clock`, a sender's clock ahead
    old = SenderClockSeenKeys(30_000)
    old.add(digest("old-key"), NOW + timedelta(hours=1), NOW)
    receiver = ShardMemory(seen_capacity=30_000, identity_capacity=100, seen=old)
    # When it inherits a handoff
    receiver.inherit(_busy_memory().handoff(lambda _: False, NOW, NOW), NOW)
    # Then its memory is on our clock and knows both its own key and the inherited ones
    seen = _seen(receiver)
    assert digest("old-key") in seen
    assert digest("event-0") in seen
