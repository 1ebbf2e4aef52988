"""One Insider upsert for many concurrent callers: the journey shards of a worker process.

Insider takes up to 1,000 users per upsert and allows 25,000 upsert requests a minute per
account. A shard delivers what reached it in the last moments, which at ordinary rates is a
few dozen users; the coalescer holds each submission for a short linger and sends what all
shards submitted meanwhile as one request, so the number of requests per event falls with
the number of shards rather than rising with it.

Each caller gets the outcome of its own users: refusals by index into what it submitted,
or the request's exception (an ambiguous failure is ambiguous for every user in it). A
request Insider refuses as a whole (400) is sent again per caller, so one caller's bad
record cannot fail the others - unless part of it was stored already (a request split by
size whose first part went through): then every caller settles its users.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from ct_insider import telemetry
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderBadRequest
from ct_insider.insider.models import RecordFailure, UpsertResult, User


@dataclass
class _Submission:
    users: Sequence[User]
    answer: asyncio.Future[UpsertResult]


@dataclass
class _Pending:
    submissions: list[_Submission] = field(default_factory=list)
    users: int = 0
    timer: asyncio.TimerHandle | None = None


# Users per coalesced request: also the most profile reads one lost answer costs to settle
# (Insider's profile quota is 1,000 units a minute; 200 users still carry 200+ events).
MAX_USERS_PER_EVENT_REQUEST = 200


class UpsertCoalescer:
    def __init__(
        self,
        client: InsiderClient,
        *,
        linger_seconds: float = 0.05,
        max_users: int = MAX_USERS_PER_EVENT_REQUEST,
    ) -> None:
        self._client = client
        self._linger = linger_seconds
        self._max_users = max_users
        self._pending: dict[bool, _Pending] = {}  # by skip_hook
        self._sending: set[asyncio.Task[None]] = set()
        self.requests = 0  # Insider upsert requests sent (for the delivery statistics)
        telemetry.track_open_timers(self)

    def open_timers(self) -> dict[str, int]:
        """Upserts lingering for others to join (for the ct_insider_open_timers gauge)."""
        return {"upsert_linger": sum(1 for p in self._pending.values() if p.timer is not None)}

    async def upsert(self, users: Sequence[User], *, skip_hook: bool = False) -> UpsertResult:
        """Upsert `users` together with whatever other callers submit within the linger.
        Raises what the request raised (`maybe_stored` tells whether it may have arrived)."""
        if not users:
            return UpsertResult()
        loop = asyncio.get_running_loop()
        submission = _Submission(users, loop.create_future())
        pending = self._pending.setdefault(skip_hook, _Pending())
        if pending.users and pending.users + len(users) > self._max_users:
            self._send_now(skip_hook)
            pending = self._pending.setdefault(skip_hook, _Pending())
        pending.submissions.append(submission)
        pending.users += len(users)
        if pending.users >= self._max_users or self._linger <= 0:
            self._send_now(skip_hook)
        elif pending.timer is None:
            pending.timer = loop.call_later(self._linger, self._send_now, skip_hook)
        return await submission.answer

    def _send_now(self, skip_hook: bool) -> None:
        pending = self._pending.pop(skip_hook, None)
        if pending is None or not pending.submissions:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        task = asyncio.ensure_future(self._send(pending.submissions, skip_hook))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, submissions: list[_Submission], skip_hook: bool) -> None:
        combined = [user for submission in submissions for user in submission.users]
        try:
            result = await self._request(combined, skip_hook, not any(u.events for u in combined))
        except InsiderBadRequest as exc:
            if len(submissions) > 1 and not exc.maybe_stored:
                # Refused as a whole: ask per caller, so only the one at fault fails.
                await asyncio.gather(*(self._send([s], skip_hook) for s in submissions))
                return
            _fail(submissions, exc)
            return
        except Exception as exc:  # every caller learns what happened to its users
            _fail(submissions, exc)
            return
        shares = _split(result, [len(s.users) for s in submissions])
        shares[0].requests = result.requests  # the request counts once, not once per caller
        for submission, share in zip(submissions, shares, strict=True):
            if not submission.answer.done():
                submission.answer.set_result(share)

    async def _request(self, users: list[User], skip_hook: bool, repeatable: bool) -> UpsertResult:
        try:
            return await self._client.upsert_users(
                users, skip_hook=skip_hook, repeatable=repeatable
            )
        finally:
            self.requests += 1

    async def aclose(self) -> None:
        """Send what is pending now and wait for every request in flight."""
        for skip_hook in list(self._pending):
            self._send_now(skip_hook)
        await asyncio.gather(*self._sending, return_exceptions=True)


def _fail(submissions: list[_Submission], exc: Exception) -> None:
    for submission in submissions:
        if not submission.answer.done():
            submission.answer.set_exception(exc)


def _split(result: UpsertResult, sizes: list[int]) -> list[UpsertResult]:
    """Each caller's share of a combined result: failure indices made relative to it."""
    shares = [UpsertResult() for _ in sizes]
    bounds: list[tuple[int, int]] = []
    start = 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    for failure in result.failures:
        for share, (low, high) in zip(shares, bounds, strict=True):
            if low <= failure.index < high:
                share.failures.append(
                    RecordFailure(
                        index=failure.index - low, reasons=failure.reasons, fields=failure.fields
                    )
                )
                break
    for share, size in zip(shares, sizes, strict=True):
        share.successful = size - len(share.failures)
    return shares
