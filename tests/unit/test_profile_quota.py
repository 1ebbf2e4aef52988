"""Profile reads are paced to Insider's quota units per minute, settled on reported costs."""

from __future__ import annotations

import time

from ct_insider.insider.quota import ASSUMED_COST, ProfileQuota

# A bucket of 60 units refilled at one unit per second.
UNITS_PER_MINUTE = 60.0
SMALL_COST = 0.2


async def _drain(quota: ProfileQuota, reads: int, cost: float) -> None:
    for _ in range(reads):
        await quota.wait()
        quota.settle(cost)


async def test_reads_within_the_bucket_do_not_wait() -> None:
    # Given a full bucket of 60 units
    quota = ProfileQuota(UNITS_PER_MINUTE)
    # When reads worth 59.8 units are made (the first at the assumed cost, the rest small)
    started = time.monotonic()
    await _drain(quota, 299, SMALL_COST)
    # Then none of them waited (a single wait would be at least ~0.2 s)
    assert time.monotonic() - started < 0.1


async def test_a_read_waits_about_its_cost_over_the_rate_once_the_bucket_is_empty() -> None:
    # Given a bucket drained by 300 reads of 0.2 units each (60 units)
    quota = ProfileQuota(UNITS_PER_MINUTE)
    await _drain(quota, 300, SMALL_COST)
    # When one more attempt is made
    started = time.monotonic()
    await quota.wait()
    waited = time.monotonic() - started
    # Then it waited about 0.2 units / (1 unit per second) = 0.2 s
    assert 0.12 <= waited <= 0.5


async def test_the_reported_cost_replaces_the_estimate_for_the_next_attempt() -> None:
    # Given a quota that has not seen any read yet
    quota = ProfileQuota(UNITS_PER_MINUTE)
    assert quota.estimate == ASSUMED_COST
    # When a read reports what it cost
    await quota.wait()
    quota.settle(1.75)
    # Then the next attempt reserves that
    assert quota.estimate == 1.75


async def test_an_answer_without_a_usable_cost_keeps_the_estimate() -> None:
    quota = ProfileQuota(UNITS_PER_MINUTE)
    quota.settle(0.5)
    for reported in (None, -1, "3", True):
        quota.settle(reported)
    assert quota.estimate == 0.5


async def test_a_read_costlier_than_estimated_is_charged_in_full() -> None:
    # Given a bucket with 0.4 units left, attempts estimated at 0.2 units
    quota = ProfileQuota(UNITS_PER_MINUTE)
    await _drain(quota, 298, SMALL_COST)
    # When an attempt reserves 0.2 units but Insider reports it cost 0.4
    await quota.wait()
    quota.settle(0.4)
    # Then the next attempt (estimated at 0.4 now) waits for about 0.4 s of refill
    started = time.monotonic()
    await quota.wait()
    assert 0.25 <= time.monotonic() - started <= 0.8


async def test_every_attempt_is_charged() -> None:
    # Given a bucket of 600 units and attempts at 2.5 units (a read retried counts again)
    quota = ProfileQuota(600)
    started = time.monotonic()
    for _ in range(240):  # 600 units
        await quota.wait()
    # When a 241st attempt is made, it waits for 2.5 units of refill (10 a second)
    await quota.wait()
    assert time.monotonic() - started >= 0.2
