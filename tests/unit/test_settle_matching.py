"""The settle-matching probe (what an account's profile reads return of an event we sent)
and how the workers' matching is decided and judged against it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderUnavailable
from ct_insider.insider.held import Matching
from ct_insider.insider.models import RecordFailure, UpsertResult, User
from ct_insider.insider.probe import (
    PROBE_EVENT,
    PROBE_PRODUCT,
    PROBE_UUID,
    ProbeAnswer,
    ProbeFailed,
    probe_matching,
)
from ct_insider.setup.matching import (
    EffectiveMatching,
    MatchingStore,
    SettleMatching,
    StoredMatching,
    effective_matching,
    judge,
)

NOW = datetime(2026, 11, 26, 18, 0, 0, 600_000, tzinfo=UTC)
SENT = "2026-11-26T17:00:00Z"  # NOW less PROBE_AGE, whole seconds
PROBE_ID = "probe-1"
NO_WAITS = [0.0, 0.0, 0.0]


@dataclass
class FakeInsider:
    """Answers profile reads from a script (None: 404); records what the probe does."""

    reads: list[dict[str, Any] | None]
    refusal: list[str] | None = None
    upserts: list[tuple[list[User], bool]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)

    async def upsert_users(self, users: Sequence[User], *, skip_hook: bool) -> UpsertResult:
        self.upserts.append((list(users), skip_hook))
        if self.refusal:
            return UpsertResult(failures=[RecordFailure(index=0, reasons=self.refusal)])
        return UpsertResult(successful=1, requests=1)

    async def read_profile(
        self,
        identifiers: dict[str, Any],
        attributes: Sequence[str] = ("*",),
        events: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        self.queries.append({"identifiers": identifiers, "events": events})
        answer = self.reads.pop(0) if self.reads else None
        return answer

    async def delete_user(self, identifiers: dict[str, Any]) -> None:
        self.deleted.append(identifiers)


def _read(*events: dict[str, Any]) -> dict[str, Any]:
    return {"attributes": {"uuid": PROBE_UUID}, "events": {PROBE_EVENT: list(events)}}


FULL = {"event_id": PROBE_ID, "product_id": PROBE_PRODUCT, "created_date": SENT}
DEFAULT_ONLY = {"product_id": PROBE_PRODUCT, "created_date": SENT}


async def _probe(fake: FakeInsider, waits: Sequence[float] = NO_WAITS) -> ProbeAnswer:
    return await probe_matching(cast(InsiderClient, fake), waits, now=NOW, event_id=PROBE_ID)


async def test_an_account_returning_custom_params_is_matched_by_event_id() -> None:
    # Given an account whose read returns the probe event with its event_id
    fake = FakeInsider([_read(FULL)])
    # When the probe runs
    answer = await _probe(fake)
    # Then it answers event_id after one read, and says the timestamp came back too
    assert answer == ProbeAnswer(
        matching="event_id", event_id_returned=True, timestamp_returned=True, reads=1
    )
    # And it wrote one probe event, an hour back, without starting journeys, and read it
    [(users, skip_hook)] = fake.upserts
    assert skip_hook is True
    [user] = users
    assert user.identifiers.uuid == PROBE_UUID
    assert user.events is not None
    [event] = user.events
    assert (event.event_name, event.timestamp) == (PROBE_EVENT, SENT)
    assert event.event_params == {"product_id": PROBE_PRODUCT, "custom": {"event_id": PROBE_ID}}
    [query] = fake.queries
    assert query["identifiers"] == {"uuid": PROBE_UUID}
    assert query["events"]["wanted"] == [
        {"event_name": PROBE_EVENT, "params": ["event_id", "product_id"]}
    ]
    # And the probe profile is gone
    assert fake.deleted == [{"uuid": PROBE_UUID}]


async def test_an_account_returning_default_params_only_is_matched_by_fingerprint() -> None:
    # Given an account whose read returns the product and second, not the event_id
    fake = FakeInsider([_read({**DEFAULT_ONLY, "created_date": "2026-11-26T17:00:00.000Z"})])
    # When the probe runs
    answer = await _probe(fake)
    # Then it answers fingerprint
    assert answer.matching == "fingerprint"
    assert (answer.event_id_returned, answer.timestamp_returned) == (False, True)
    assert fake.deleted == [{"uuid": PROBE_UUID}]


async def test_the_probe_reads_again_until_the_event_is_readable() -> None:
    # Given an account that does not know the profile yet, then shows no event, then it
    fake = FakeInsider([None, _read(), _read(DEFAULT_ONLY)])
    # When the probe runs
    answer = await _probe(fake)
    # Then the third read decides
    assert (answer.matching, answer.reads) == ("fingerprint", 3)


async def test_an_event_never_readable_within_the_bound_is_no_answer() -> None:
    # Given an account that never shows the event
    fake = FakeInsider([])
    # When the probe runs with three reads
    with pytest.raises(ProbeFailed, match="not readable within"):
        await _probe(fake)
    # Then it read three times, and deleted the probe profile all the same
    assert len(fake.queries) == 3
    assert fake.deleted == [{"uuid": PROBE_UUID}]


async def test_a_read_returning_neither_the_id_nor_the_second_is_a_failure() -> None:
    # Given an account whose created_date is when it received the event, not its timestamp
    received = {"product_id": PROBE_PRODUCT, "created_date": "2026-11-26T18:00:01Z"}
    fake = FakeInsider([_read(received)] * 3)
    # When the probe runs
    with pytest.raises(ProbeFailed) as failed:
        await _probe(fake)
    # Then it says settlement cannot recognise events, naming what came back
    assert "cannot recognise" in str(failed.value)
    assert "2026-11-26T18:00:01Z" in str(failed.value)


async def test_a_refused_probe_event_names_insiders_reason() -> None:
    # Given InOne does not define the event param
    fake = FakeInsider([], refusal=["event_id is not defined"])
    # When the probe runs
    with pytest.raises(ProbeFailed, match="event_id is not defined"):
        await _probe(fake)
    # Then nothing was read, and the profile deleted
    assert fake.queries == []
    assert fake.deleted == [{"uuid": PROBE_UUID}]


async def test_a_failed_deletion_does_not_hide_the_answer() -> None:
    # Given an account that answers the read but fails the deletion
    fake = FakeInsider([_read(FULL)])

    async def failing_delete(identifiers: dict[str, Any]) -> None:
        raise InsiderUnavailable(500, "down", maybe_stored=True)

    fake.delete_user = failing_delete  # type: ignore[method-assign]
    # When the probe runs
    answer = await _probe(fake)
    # Then the answer stands (the next probe deletes the profile)
    assert answer.matching == "event_id"


# -- the workers' matching ------------------------------------------------------------------


@dataclass
class FakeStore:
    stored: StoredMatching | None = None
    gets: int = 0

    async def get(self, partner_name: str) -> StoredMatching | None:
        self.gets += 1
        return self.stored


def _stored(matching: Matching) -> StoredMatching:
    return StoredMatching(
        matching=matching,
        event_id_returned=matching == "event_id",
        timestamp_returned=True,
        probed_at=NOW,
    )


async def test_an_explicit_setting_wins_over_the_stored_probe() -> None:
    # Given a stored probe answer of fingerprint
    store = FakeStore(_stored("fingerprint"))
    # When the setting says event_id, or auto
    explicit = await effective_matching("event_id", "shop", cast(MatchingStore, store))
    auto = await effective_matching("auto", "shop", cast(MatchingStore, store))
    # Then the setting decides, else the probe
    assert (explicit.matching, explicit.source) == ("event_id", "setting")
    assert (auto.matching, auto.source, auto.probed_at) == ("fingerprint", "probe", NOW)


async def test_workers_keep_a_probed_answer_and_ask_again_while_there_is_none() -> None:
    # Given a worker on auto, and no probe stored yet
    store = FakeStore()
    matching = SettleMatching("auto", "shop", cast(MatchingStore, store))
    # When it settles twice
    first = await matching.current()
    second = await matching.current()
    # Then it matches by event_id, reading the store each time
    assert (first, second, store.gets) == ("event_id", "event_id", 2)
    # When `setup insider` has stored fingerprint
    store.stored = _stored("fingerprint")
    # Then the next settlements use it, reading the store once more only
    assert [await matching.current() for _ in range(3)] == ["fingerprint"] * 3
    assert store.gets == 3


def _probed(matching: Matching, *, timestamp_returned: bool = True) -> ProbeAnswer:
    return ProbeAnswer(
        matching=matching,
        event_id_returned=matching == "event_id",
        timestamp_returned=timestamp_returned,
        reads=1,
    )


@pytest.mark.parametrize(
    ("workers", "probed", "status", "says"),
    [
        ("event_id", _probed("event_id"), "OK", "return custom event params"),
        ("fingerprint", _probed("fingerprint"), "OK", "do not return"),
        ("event_id", _probed("fingerprint"), "FAIL", "would be sent again"),
        ("fingerprint", _probed("event_id"), "WARN", "tells apart identical events"),
        # reads return the id but not the timestamp as sent: fingerprints never match
        (
            "fingerprint",
            _probed("event_id", timestamp_returned=False),
            "FAIL",
            "timestamp as sent",
        ),
    ],
)
def test_the_workers_matching_is_judged_against_the_probe(
    workers: Matching, probed: ProbeAnswer, status: str, says: str
) -> None:
    # Given workers matching per the setting
    effective = EffectiveMatching(matching=workers, source="setting")
    # When a probe found what the account's reads return
    verdict, detail = judge(effective, probed)
    # Then a mismatch that duplicates fails, one that only loses precision warns
    assert verdict == status
    assert says in detail
    if status != "OK":
        assert "INSIDER_SETTLE_MATCHING" in detail


def test_an_unprobed_account_is_told_to_run_setup() -> None:
    # Given workers on the default (nothing stored) and an account without custom params
    effective = EffectiveMatching(matching="event_id", source="default")
    # When judged
    verdict, detail = judge(effective, _probed("fingerprint"))
    # Then it fails, naming the fix
    assert verdict == "FAIL"
    assert "ct-insider setup insider" in detail
