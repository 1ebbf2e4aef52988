"""What a journey shard hands its next run at continue-as-new stays within its budget."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_core import to_json

from ct_insider.config import PayloadCodecSettings
from ct_insider.deadletters import DeadLetterDraft
from ct_insider.journeys.archive_lane import max_lane_bytes
from ct_insider.journeys.delivery import Bookkeeping
from ct_insider.journeys.layout import MAX_SHARDS, LayoutChange, ShardLayout
from ct_insider.journeys.memory import memory_with
from ct_insider.journeys.signals import MAX_SIGNAL_BYTES, JourneyIdentity, JourneySignal, Market
from ct_insider.journeys.storefront import StorefrontEvent
from ct_insider.temporal import data_converter
from tests.unit.test_dedupe_archive_lane import full_lane
from tests.unit.test_shard_memory import NOW, full_memory
from workflows.journey_shard import (
    CARRY_BUDGET,
    ShardCarry,
    ShardInput,
    ShardSettings,
    ShardStats,
    carried_signal,
    fits_carry,
    within_carry_budget,
)

KEYS_SINCE_CARRY = 500  # accepted while the carry was being completed


def _largest_signal(number: int) -> JourneySignal:
    """A storefront event with every field at its longest, in characters UTF-8 takes 3
    bytes for."""
    event = StorefrontEvent.model_validate(
        {
            "event_id": f"{number:08d}" + "e" * 120,
            "type": "product_view",
            "sku": "€" * 256,
            "occurred_at": NOW,
            "identity": {"anonymous_id": "ä" * 256, "email": "€" * 300 + "@example.com"},
            "name": "€" * 1024,
            "url": "https://shop.example/" + "u" * 2000,
            "categories": ["€" * 50] * 20,
            "store": "s" * 256,
            "channel": "c" * 64,
        }
    )
    return JourneySignal(
        dedupe_key=f"event:{event.event_id}",
        kind="storefront",
        type=event.type,
        occurred_at=event.occurred_at,
        identity=JourneyIdentity(anonymous_id=event.identity.anonymous_id),
        market=Market(channel=event.channel, store=event.store),
        storefront=event,
        received_at=NOW,
    )


def _worst_case_layout() -> ShardLayout:
    """A shard's side of a reshard at its largest: every shard there can be hands it off
    (in three parts each), all received."""
    change = LayoutChange(
        epoch=10**9, old_shards=MAX_SHARDS, new_shards=MAX_SHARDS - 1, handoff_at=NOW
    )
    senders = list(range(MAX_SHARDS))
    return ShardLayout(
        change=change, parts={sender: [0, 1, 2] for sender in senders}, complete=senders
    )


def _worst_case_work(
    settings: ShardSettings, lane_bytes: int, layout: ShardLayout | None = None
) -> tuple[list[Bookkeeping], list[JourneySignal]]:
    """Unfinished bookkeeping and pending signals (and, during a reshard, signals held or
    to forward: the same list, split by the caller) as large as the shard carries them
    beside an archive lane of `lane_bytes`."""
    unfinished = [
        Bookkeeping(
            ledger={f"order-{n}": [f"purchase:line-{m}" for m in range(50)] for n in range(20)},
            letters=[
                DeadLetterDraft(
                    entity="storefront-event",
                    record_id="e-1",
                    reasons=["refused: " + "€" * 500],
                    run="shard-000",
                    redrive={"signal": _largest_signal(0).model_dump(mode="json")},
                )
            ],
            redriven=[f"letter-{n}@1" for n in range(50)],
        )
    ]
    room = settings.pending_max_bytes - KEYS_SINCE_CARRY * 22 - lane_bytes
    if layout is not None:
        room -= len(to_json(layout))
    pending: list[JourneySignal] = []
    while fits_carry([*unfinished, *pending, _largest_signal(len(pending))], room):
        pending.append(_largest_signal(len(pending)))
    return unfinished, pending


@pytest.mark.parametrize("resharding", [False, True])
async def test_the_worst_case_carry_fits_its_budget_through_the_real_converter(
    resharding: bool,
) -> None:
    # Given a shard with the default settings, its memory full to every capacity (keys,
    # keys dated ahead, identities each in a market of its own, deletions), its dedupe
    # archive's lane at its largest (commercetools down: queue full, deletes failing), as
    # much pending work as it carries beside them, keys accepted while it continued, and
    # statistics at their largest; during a reshard also its side of the change at its
    # largest, and that work split into pending, held and to-forward signals
    settings = ShardSettings()
    memory = full_memory(
        settings.seen_capacity, settings.identity_capacity, settings.deleted_capacity
    )
    snapshot = memory.snapshot(NOW - timedelta(days=1), NOW)
    since = [
        (f"event:late-{n}", NOW + timedelta(hours=n % 2), NOW) for n in range(KEYS_SINCE_CARRY)
    ]
    layout = _worst_case_layout() if resharding else ShardLayout()
    lane = full_lane(settings.seen_capacity, shard="s" * 1000)  # the longest workflow id
    unfinished, work = _worst_case_work(
        settings, lane.carried_bytes(), layout if resharding else None
    )
    split = 3 if resharding else 1
    carried = ShardCarry(
        memory=memory_with(snapshot, since),
        pending=work[0::split],
        unfinished=unfinished,
        stats=ShardStats(**dict.fromkeys(ShardStats.model_fields, 10**18)),
        layout=layout,
        held=work[1::split] if resharding else [],
        forwards=work[2::split] if resharding else [],
        archive=lane.snapshot(),
    )
    # When continue-as-new hands it over, through the worker's converter with encryption
    key = base64.b64encode(b"k" * 32).decode()
    converter = data_converter(PayloadCodecSettings(keys=SecretStr(f"key-1:{key}")))
    [payload] = await converter.encode([ShardInput(shard=999, settings=settings, carried=carried)])
    # Then it is within the budget, and within the bound the settings were checked against
    # (which is close: the test builds the worst case)
    size = payload.ByteSize()
    assert size <= CARRY_BUDGET
    bound = settings.max_carry_bytes()
    assert bound * 0.97 < size <= bound


def test_settings_whose_worst_case_exceeds_the_budget_are_refused() -> None:
    # Given capacities that fit one by one but not together
    with pytest.raises(ValidationError, match="beyond its budget of 1,500,000"):
        ShardSettings(seen_capacity=60_000)
    with pytest.raises(ValidationError, match="beyond its budget"):
        ShardSettings(deleted_capacity=50_000)
    # Then the defaults, and what fits, are taken
    assert ShardSettings().max_carry_bytes() <= CARRY_BUDGET
    assert ShardSettings(seen_capacity=60_000, identity_capacity=4_000).seen_capacity == 60_000


def test_pending_work_keeps_room_for_a_signal_beside_a_full_archive_lane() -> None:
    # Given pending work's share too small to hold a full lane and one largest signal
    share = max_lane_bytes(30_000) + MAX_SIGNAL_BYTES - 1
    # Then the settings are refused with the archive, and taken without it
    with pytest.raises(ValidationError, match="dedupe archive's lane"):
        ShardSettings(pending_max_bytes=share)
    assert (
        ShardSettings(
            pending_max_bytes=share, archive_retention_minutes=0
        ).archive_retention_minutes
        == 0
    )
    assert ShardSettings(pending_max_bytes=share + 1).pending_max_bytes == share + 1


def test_settings_carried_by_runs_before_the_budget_are_read() -> None:
    # Given the settings a running shard carried before pending work had its own bound
    old = (
        '{"max_batch": 250, "gather_seconds": 0.0, "seen_capacity": 30000, '
        '"identity_capacity": 20000, "identity_idle_seconds": 86400.0, "max_run_signals": '
        '6000, "max_history_events": 5000, "max_history_bytes": 4000000, '
        '"carry_max_bytes": 512000}'
    )
    # When the next run reads them
    settings = ShardSettings.model_validate_json(old)
    # Then they take the bounds of today
    assert settings.pending_max_bytes == ShardSettings().pending_max_bytes
    assert settings.max_carry_bytes() <= CARRY_BUDGET


async def test_a_carry_measured_within_the_budget_fits_it_through_the_real_converter() -> None:
    # Given a shard whose memory is a quarter full (a busy shop's shard: its identities
    # turn over, its capacity is sized for the worst case), its archive lane full, and
    # more pending signals than pending_max_bytes allows beside a full memory
    settings = ShardSettings()
    memory = full_memory(
        settings.seen_capacity, settings.identity_capacity // 4, settings.deleted_capacity // 4
    )
    lane = full_lane(settings.seen_capacity, shard="s" * 1000)

    def carry(pending: list[JourneySignal]) -> ShardCarry:
        return ShardCarry(
            memory=memory.snapshot(NOW - timedelta(days=1), NOW),
            pending=pending,
            stats=ShardStats(**dict.fromkeys(ShardStats.model_fields, 10**18)),
            archive=lane.snapshot(),
        )

    signals = [_largest_signal(n) for n in range(CARRY_BUDGET // MAX_SIGNAL_BYTES * 4)]
    fits, over = 0, len(signals)  # (the most signals the rule accepts, by bisection)
    while over - fits > 1:
        middle = (fits + over) // 2
        fits, over = (
            (middle, over) if within_carry_budget(carry(signals[:middle])) else (fits, middle)
        )
    pending = signals[:fits]
    assert not within_carry_budget(carry(signals[: fits + 1]))
    # Then the measured rule carries far more than the fixed share would
    assert fits_carry(pending, settings.pending_max_bytes) is False
    assert len(to_json(pending)) > 2 * settings.pending_max_bytes
    # And the largest carry it accepts, through the worker's converter with encryption, is
    # within the budget
    key = base64.b64encode(b"k" * 32).decode()
    converter = data_converter(PayloadCodecSettings(keys=SecretStr(f"key-1:{key}")))
    [payload] = await converter.encode(
        [ShardInput(shard=999, settings=settings, carried=carry(pending))]
    )
    assert CARRY_BUDGET - 2 * MAX_SIGNAL_BYTES < payload.ByteSize() <= CARRY_BUDGET


def test_runs_before_the_measured_carry_measure_pending_signals_whole() -> None:
    # Given ordinary storefront events whose compact form fits a room their whole JSON does not
    event = _largest_signal(0).storefront
    assert event is not None
    signals = [
        _largest_signal(n).model_copy(
            update={
                "storefront": event.model_copy(
                    update={"name": "Shoe", "url": None, "categories": [], "sku": f"SKU-{n}"}
                ),
                "identity": JourneyIdentity(anonymous_id=f"visitor-{n}"),
                "market": Market(),
            }
        )
        for n in range(100)
    ]
    whole = sum(len(to_json(s)) for s in signals)
    compact = sum(len(to_json(carried_signal(s))) for s in signals)
    room = (whole + compact) // 2
    # Then a run since `carry-measured` finds them carryable, and one begun before, measuring
    # as it measured when it decided (a replay must decide the same), does not
    assert compact < room < whole
    assert fits_carry(signals, room)
    assert not fits_carry(signals, room, compact=False)
