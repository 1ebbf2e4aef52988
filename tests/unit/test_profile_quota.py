"""Profile reads are paced to Insider's quota units per minute, settled on reported costs."""

from __future__ import annotations

import time

from ct_insider.insider.quota import ASSUMED_COST, ProfileQuota

# A bucket of 60 units refilled at one unit per second.
UNITS_PER_MINUTE = 60.0
SMALL_COST = 0.2


async def _drain(quota: ProfileQuota, reads: int, cost: float) -> None:
    for _ in range(reads):
        async with quota.read() as charge:
            charge.cost(cost)


async def test_reads_within_the_bucket_do_not_wait() -> None:
    # Given a full bucket of 60 units
    quota = ProfileQuota(UNITS_PER_MINUTE)
    # When reads worth 59.8 units are made (the first at the assumed cost, the rest small)
    started = time.monotonic()
    async with quota.read() as charge:
        charge.cost(SMALL_COST)
    await _drain(quota, 298, SMALL_COST)
    elapsed = time.monotonic() - started
    # Then none of them waited (a single wait would be at least ~0.2 s)
    assert elapsed < 0.1


async def test_a_read_waits_about_its_cost_over_the_rate_once_the_bucket_is_empty() -> None:
    # Given a bucket drained by 300 reads of 0.2 units each (60 units)
    quota = ProfileQuota(UNITS_PER_MINUTE)
    await _drain(quota, 300, SMALL_COST)
    # When one more read is made
    started = time.monotonic()
    async with quota.read() as charge:
        waited = time.monotonic() - started
        charge.cost(SMALL_COST)
    # Then it waited about 0.2 units / (1 unit per second) = 0.2 s
    assert 0.12 <= waited <= 0.5


async def test_the_reported_cost_replaces_the_estimate_for_the_next_read() -> None:
    # Given a quota that has not seen any read yet
    quota = ProfileQuota(UNITS_PER_MINUTE)
    # When a read reports what it cost
    async with quota.read() as first:
        first.cost(1.75)
    async with quota.read() as second:
        pass
    # Then the first read reserved the assumed cost, the next one the reported cost
    assert first.reserved == ASSUMED_COST
    assert second.reserved == 1.75


async def test_a_read_without_a_reported_cost_keeps_the_estimate() -> None:
    # Given a quota whose last read reported 0.5 units
    quota = ProfileQuota(UNITS_PER_MINUTE)
    async with quota.read() as charge:
        charge.cost(0.5)
    # When a read reports nothing usable (no cost, a negative or non-numeric value)
    async with quota.read() as silent:
        silent.cost(None)
        silent.cost(-1)
        silent.cost("3")
    async with quota.read() as following:
        pass
    # Then the estimate is still the last reported cost
    assert silent.actual is None
    assert following.reserved == 0.5


async def test_a_read_costlier_than_reserved_is_charged_in_full() -> None:
    # Given a bucket with 0.4 units left, reads estimated at 0.2 units
    quota = ProfileQuota(UNITS_PER_MINUTE)
    await _drain(quota, 298, SMALL_COST)
    # When a read reserves 0.2 units but Insider reports it cost 0.4
    async with quota.read() as costly:
        costly.cost(0.4)
    started = time.monotonic()
    async with quota.read() as following:
        waited = time.monotonic() - started
    # Then the bucket was charged the full 0.4 (it is empty), so the next read, estimated
    # at 0.4, waits about 0.4 s (had only the reservation been charged: about 0.2 s)
    assert costly.reserved == SMALL_COST
    assert following.reserved == 0.4
    assert 0.3 <= waited <= 0.8
