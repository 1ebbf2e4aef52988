"""Profile reads are paced to Insider's quota units per minute, settled on reported costs.

The quota runs on a fake clock that moves only when the quota sleeps (or a test moves it):
what a read waited is exactly what the quota asked to sleep, whatever the machine's load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ct_insider.insider.quota import ASSUMED_COST, ProfileQuota

# A bucket of 60 units refilled at one unit per second.
UNITS_PER_MINUTE = 60.0
SMALL_COST = 0.25  # a binary fraction: the sums below are exact


@dataclass
class FakeTime:
    now: float = 0.0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def quota_on(time: FakeTime, units_per_minute: float = UNITS_PER_MINUTE) -> ProfileQuota:
    return ProfileQuota(units_per_minute, clock=time.clock, sleep=time.sleep)


async def _drain(quota: ProfileQuota, reads: int, cost: float) -> None:
    for _ in range(reads):
        await quota.wait()
        quota.settle(cost)


async def test_reads_within_the_bucket_do_not_wait() -> None:
    # Given a full bucket of 60 units
    time = FakeTime()
    quota = quota_on(time)
    # When reads worth 59.75 units are made (the first at the assumed cost, the rest small)
    await _drain(quota, 239, SMALL_COST)
    # Then none of them waited
    assert time.slept == []


async def test_a_read_waits_its_cost_over_the_rate_once_the_bucket_is_empty() -> None:
    # Given a bucket drained by 240 reads of 0.25 units each (60 units)
    time = FakeTime()
    quota = quota_on(time)
    await _drain(quota, 240, SMALL_COST)
    # When one more attempt is made
    await quota.wait()
    # Then it waited 0.25 units / (1 unit per second) = 0.25 s
    assert time.slept == [0.25]


async def test_a_drained_bucket_refills_with_time() -> None:
    # Given a drained bucket
    time = FakeTime()
    quota = quota_on(time)
    await _drain(quota, 240, SMALL_COST)
    # When 10 s pass (10 units refilled), then reads worth 10 units are made
    time.now += 10
    await _drain(quota, 40, SMALL_COST)
    # Then none of them waited, and the next one does
    assert time.slept == []
    await quota.wait()
    assert time.slept == [0.25]


async def test_the_reported_cost_replaces_the_estimate_for_the_next_attempt() -> None:
    # Given a quota that has not seen any read yet
    quota = quota_on(FakeTime())
    assert quota.estimate == ASSUMED_COST
    # When a read reports what it cost
    await quota.wait()
    quota.settle(1.75)
    # Then the next attempt reserves that
    assert quota.estimate == 1.75


async def test_an_answer_without_a_usable_cost_keeps_the_estimate() -> None:
    quota = quota_on(FakeTime())
    quota.settle(0.5)
    for reported in (None, -1, "3", True):
        quota.settle(reported)
    assert quota.estimate == 0.5


async def test_a_read_costlier_than_estimated_is_charged_in_full() -> None:
    # Given a bucket with 0.5 units left, attempts estimated at 0.25 units
    time = FakeTime()
    quota = quota_on(time)
    await _drain(quota, 238, SMALL_COST)
    # When an attempt reserves 0.25 units but Insider reports it cost 0.5
    await quota.wait()
    quota.settle(0.5)
    # Then the next attempt (estimated at 0.5 now) waits for 0.5 s of refill
    assert time.slept == []
    await quota.wait()
    assert time.slept == [0.5]


async def test_every_attempt_is_charged() -> None:
    # Given a bucket of 600 units and attempts at 2.5 units (a read retried counts again)
    time = FakeTime()
    quota = quota_on(time, 600)
    for _ in range(240):  # 600 units
        await quota.wait()
    assert time.slept == []
    # When a 241st attempt is made, it waits for 2.5 units of refill (10 a second)
    await quota.wait()
    assert time.slept == [0.25]
