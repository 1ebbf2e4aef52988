"""Concurrent journey shards share Insider upserts, and each still learns its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.coalescer import UpsertCoalescer
from ct_insider.insider.errors import InsiderBadRequest, InsiderUnavailable
from ct_insider.insider.models import Event, Identifiers, RecordFailure, UpsertResult, User

# A linger longer than any test runs: a submission sent before it is over was not lingering;
# a test that waited it out would hang, so each wait stops after HANG_SECONDS instead.
AN_HOUR = 3600.0
HANG_SECONDS = 60.0


@dataclass
class Call:
    users: list[User]
    skip_hook: bool
    repeatable: bool


@dataclass
class FakeInsider:
    """Records each upsert; `answer` decides what a request gets back."""

    answer: Callable[[list[User]], UpsertResult] | None = None
    calls: list[Call] = field(default_factory=list)

    async def upsert_users(
        self, users: Sequence[User], *, skip_hook: bool, repeatable: bool
    ) -> UpsertResult:
        batch = list(users)
        self.calls.append(Call(batch, skip_hook, repeatable))
        await asyncio.sleep(0)
        if self.answer is not None:
            return self.answer(batch)
        return UpsertResult(successful=len(batch), requests=1)


def _coalescer(fake: FakeInsider, linger: float = 0.02, max_users: int = 1_000) -> UpsertCoalescer:
    return UpsertCoalescer(cast(InsiderClient, fake), linger_seconds=linger, max_users=max_users)


def _users(prefix: str, count: int, *, with_event: bool = False) -> list[User]:
    events = (
        [Event(event_name="product_detail_page_view", timestamp="2026-11-26T18:00:00Z")]
        if with_event
        else None
    )
    return [
        User(identifiers=Identifiers(uuid=f"{prefix}-{n}"), events=events) for n in range(count)
    ]


def _uuids(users: Sequence[User]) -> list[str | None]:
    return [u.identifiers.uuid for u in users]


def _refuse(uuids: set[str]) -> Callable[[list[User]], UpsertResult]:
    """Insider refusing the users with these uuids, by their index in the request."""

    def answer(users: list[User]) -> UpsertResult:
        failures = [
            RecordFailure(index=i, reasons=[f"bad {u.identifiers.uuid}"])
            for i, u in enumerate(users)
            if u.identifiers.uuid in uuids
        ]
        return UpsertResult(successful=len(users) - len(failures), failures=failures, requests=1)

    return answer


async def test_concurrent_submissions_become_one_request_with_failures_per_caller() -> None:
    # Given Insider refusing one user of the first caller and two of the third
    fake = FakeInsider(answer=_refuse({"a-1", "c-0", "c-2"}))
    coalescer = _coalescer(fake)
    # When three shards submit at about the same time
    a, b, c = await asyncio.gather(
        coalescer.upsert(_users("a", 2)),
        coalescer.upsert(_users("b", 3)),
        coalescer.upsert(_users("c", 3)),
    )
    # Then one request carried all eight users, in submission order
    assert len(fake.calls) == 1
    assert _uuids(fake.calls[0].users) == [
        "a-0",
        "a-1",
        "b-0",
        "b-1",
        "b-2",
        "c-0",
        "c-1",
        "c-2",
    ]
    assert coalescer.requests == 1
    # And each caller got its own refusals, indexed into what it submitted
    assert [(f.index, f.reasons) for f in a.failures] == [(1, ["bad a-1"])]
    assert a.successful == 1
    assert b.failures == []
    assert b.successful == 3
    assert [(f.index, f.reasons) for f in c.failures] == [(0, ["bad c-0"]), (2, ["bad c-2"])]
    assert c.successful == 1


async def test_requests_counts_every_request_sent() -> None:
    # Given a coalescer without linger (each submission is its own request)
    fake = FakeInsider()
    coalescer = _coalescer(fake, linger=0)
    # When three submissions are made one after the other
    for name in ("a", "b", "c"):
        await coalescer.upsert(_users(name, 1))
    # Then three requests were sent and counted
    assert len(fake.calls) == 3
    assert coalescer.requests == 3


async def test_an_empty_submission_sends_nothing() -> None:
    # Given a coalescer
    fake = FakeInsider()
    coalescer = _coalescer(fake)
    # When nothing is submitted
    result = await coalescer.upsert([])
    # Then no request is made
    assert result == UpsertResult()
    assert fake.calls == []
    assert coalescer.requests == 0


async def test_submissions_with_different_skip_hook_never_share_a_request() -> None:
    # Given concurrent submissions, two with the hook and two without
    fake = FakeInsider()
    coalescer = _coalescer(fake)
    # When they are submitted together
    await asyncio.gather(
        coalescer.upsert(_users("hook-a", 1)),
        coalescer.upsert(_users("skip-a", 1), skip_hook=True),
        coalescer.upsert(_users("hook-b", 1)),
        coalescer.upsert(_users("skip-b", 1), skip_hook=True),
    )
    # Then there are two requests, each with the users of one setting only
    by_setting = {call.skip_hook: _uuids(call.users) for call in fake.calls}
    assert len(fake.calls) == 2
    assert by_setting == {False: ["hook-a-0", "hook-b-0"], True: ["skip-a-0", "skip-b-0"]}


async def test_reaching_max_users_sends_at_once() -> None:
    # Given a linger no test waits out and a request size of four users
    fake = FakeInsider()
    coalescer = _coalescer(fake, linger=AN_HOUR, max_users=4)
    # When submissions reach four users
    await asyncio.wait_for(
        asyncio.gather(coalescer.upsert(_users("a", 2)), coalescer.upsert(_users("b", 2))),
        timeout=HANG_SECONDS,
    )
    # Then they went out together without waiting for the linger
    assert len(fake.calls) == 1
    assert len(fake.calls[0].users) == 4


async def test_a_submission_that_would_overflow_max_users_starts_a_new_request() -> None:
    # Given a request size of four users and a linger no test waits out
    fake = FakeInsider()
    coalescer = _coalescer(fake, linger=AN_HOUR, max_users=4)
    # When three users are pending and three more arrive, then one more
    first = asyncio.ensure_future(coalescer.upsert(_users("a", 3)))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(coalescer.upsert(_users("b", 3)))
    await asyncio.sleep(0)
    third = asyncio.ensure_future(coalescer.upsert(_users("c", 1)))
    await asyncio.wait_for(asyncio.gather(first, second, third), timeout=HANG_SECONDS)
    # Then the pending three went alone, and the rest filled the next request
    assert [_uuids(call.users) for call in fake.calls] == [
        ["a-0", "a-1", "a-2"],
        ["b-0", "b-1", "b-2", "c-0"],
    ]


async def test_an_exception_reaches_every_caller_of_the_request() -> None:
    # Given Insider failing ambiguously
    failure = InsiderUnavailable(500, "x", maybe_stored=True)

    def unavailable(users: list[User]) -> UpsertResult:
        raise failure

    fake = FakeInsider(answer=unavailable)
    coalescer = _coalescer(fake)
    # When two callers share the request
    results = await asyncio.gather(
        coalescer.upsert(_users("a", 1)),
        coalescer.upsert(_users("b", 1)),
        return_exceptions=True,
    )
    # Then both get the very exception, which says the users may be stored
    assert list(results) == [failure, failure]
    assert all(isinstance(r, InsiderUnavailable) and r.maybe_stored for r in results)
    assert len(fake.calls) == 1
    assert coalescer.requests == 1


async def test_a_request_refused_as_a_whole_is_retried_per_caller() -> None:
    # Given Insider refusing any request that contains the bad user
    def refuse_bad(users: list[User]) -> UpsertResult:
        if "bad-0" in _uuids(users):
            raise InsiderBadRequest(400, "payload refused")
        return UpsertResult(successful=len(users), requests=1)

    fake = FakeInsider(answer=refuse_bad)
    coalescer = _coalescer(fake)
    # When three callers share a request, one of them with the bad user
    good_a, bad, good_b = await asyncio.gather(
        coalescer.upsert(_users("good-a", 2)),
        coalescer.upsert(_users("bad", 1)),
        coalescer.upsert(_users("good-b", 1)),
        return_exceptions=True,
    )
    # Then only the caller at fault fails; the others are delivered by their own requests
    assert isinstance(bad, InsiderBadRequest)
    assert isinstance(good_a, UpsertResult)
    assert good_a.successful == 2
    assert isinstance(good_b, UpsertResult)
    assert good_b.successful == 1
    assert _uuids(fake.calls[0].users) == ["good-a-0", "good-a-1", "bad-0", "good-b-0"]
    assert sorted(tuple(_uuids(call.users)) for call in fake.calls[1:]) == [
        ("bad-0",),
        ("good-a-0", "good-a-1"),
        ("good-b-0",),
    ]
    assert coalescer.requests == 4


async def test_a_refusal_after_part_of_the_request_was_stored_is_never_split() -> None:
    # Given Insider refusing a combined request whose first part (split by size) it stored
    def partly_stored(users: list[User]) -> UpsertResult:
        raise InsiderBadRequest(400, "second part refused", maybe_stored=True)

    fake = FakeInsider(answer=partly_stored)
    coalescer = _coalescer(fake)
    # When two callers share that request
    first, second = await asyncio.gather(
        coalescer.upsert(_users("a", 1)), coalescer.upsert(_users("b", 1)), return_exceptions=True
    )
    # Then both learn that their users may have been stored; nothing is sent again
    assert isinstance(first, InsiderBadRequest)
    assert first.maybe_stored
    assert isinstance(second, InsiderBadRequest)
    assert second.maybe_stored
    assert len(fake.calls) == 1


async def test_a_single_caller_refused_as_a_whole_gets_the_error_once() -> None:
    # Given Insider refusing every request
    def refuse(users: list[User]) -> UpsertResult:
        raise InsiderBadRequest(400, "payload refused")

    fake = FakeInsider(answer=refuse)
    coalescer = _coalescer(fake)
    # When one caller submits alone
    with pytest.raises(InsiderBadRequest):
        await coalescer.upsert(_users("a", 2))
    # Then the request was not repeated
    assert len(fake.calls) == 1


@pytest.mark.parametrize(
    ("first_has_events", "second_has_events", "repeatable"),
    [(False, False, True), (True, False, False), (False, True, False)],
)
async def test_a_request_is_repeatable_only_without_events(
    first_has_events: bool, second_has_events: bool, repeatable: bool
) -> None:
    # Given two submissions, with or without events
    fake = FakeInsider()
    coalescer = _coalescer(fake)
    # When they share a request
    await asyncio.gather(
        coalescer.upsert(_users("a", 1, with_event=first_has_events)),
        coalescer.upsert(_users("b", 1, with_event=second_has_events)),
    )
    # Then the request may be repeated only if no user carries events
    assert len(fake.calls) == 1
    assert fake.calls[0].repeatable is repeatable


async def test_aclose_flushes_pending_submissions() -> None:
    # Given a submission waiting out a linger no test waits out
    fake = FakeInsider()
    coalescer = _coalescer(fake, linger=AN_HOUR)
    pending = asyncio.ensure_future(coalescer.upsert(_users("a", 2)))
    await asyncio.sleep(0)
    assert fake.calls == []
    # When the coalescer is closed
    await asyncio.wait_for(coalescer.aclose(), timeout=HANG_SECONDS)
    # Then the submission was sent and answered
    assert len(fake.calls) == 1
    assert pending.done()
    assert pending.result().successful == 2
