"""Sync rejections as dead letters, what `dlq` shows of them, and the search attributes."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from temporalio.client import Client

from activities.sync import SyncActivities, SyncChunkInput
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import DeadLetter, DeadLetterDraft, DeadLetterStore
from ct_insider.search_attributes import (
    CUSTOMER_ID,
    ENTITY,
    OUTCOME,
    RUN_KIND,
    dev_server_flags,
    outcome_update,
    run_attributes,
    run_updates,
)
from ct_insider.sync.redrive import is_sync_letter
from ct_insider.sync.rejected import legacy_path_of_lane, market_of, sync_letters
from ct_insider.sync.reports import Rejection, SyncStats
from ct_insider.sync.window import Window
from starters.cli import _parser
from starters.dlq import RetryReport, how_to_redrive, retry, summary
from starters.output import UsageError
from workflows.backfill import BackfillProgress, BackfillWorkflow, EntityProgress
from workflows.redrive import redrive_workflow_id


@pytest.mark.parametrize(
    ("lane", "path"),
    [
        ("backfill-customers-all", "backfill"),
        ("backfill-catalog-full-all", "catalog"),
        ("delta-orders", "delta"),
        # a schedule names its runs after itself
        ("ct-insider-catalog-reconciliation-2026-12-03T01:00:00Z", "catalog"),
        ("ct-insider-nightly-customers-2026-12-03T01:00:00Z", "backfill"),
    ],
)
def test_a_chunk_scheduled_before_workflows_passed_the_path_still_gets_one(
    lane: str, path: str
) -> None:
    assert legacy_path_of_lane(lane) == path


def test_a_chunk_dead_letters_under_the_path_its_workflow_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a chunk of a catalog sync a schedule with an operator-chosen name started (the
    # schedule names the workflow id: it says nothing about the path)
    lane = "ct-insider-weekly-items-2026-12-03T01:00:00Z"
    chunk = SyncChunkInput(lane=lane, entity="products", window=Window(), path="catalog")
    # When its rejections are written (the activity's dead-lettering sender, whose store
    # collects the letters here)
    written: list[DeadLetterDraft] = []

    class Collecting:
        async def put(self, drafts: list[DeadLetterDraft]) -> None:
            written.extend(drafts)

    async def refusing(records: list[dict[str, Any]]) -> SyncStats:
        stats = SyncStats(processed=1)
        stats.reject(Rejection(record_id="SKU-1@de_DE", stage="mapping", reasons=["no price"]))
        return stats

    activities = SyncActivities.__new__(SyncActivities)
    activities._ct = cast(CommercetoolsClient, None)
    monkeypatch.setattr(activities, "_sender", lambda params: refusing)
    monkeypatch.setattr("activities.sync.DeadLetterStore", lambda ct: Collecting())
    send = activities._dead_lettering(chunk)

    async def send_a_batch() -> None:
        await send([{"id": "p-1"}])

    asyncio.run(send_a_batch())
    # Then the letter is the catalog's, as the workflow said
    assert [(letter.path, letter.run) for letter in written] == [("catalog", lane)]


def test_market_of_orders_customers_and_catalog_items() -> None:
    assert market_of({"country": "DE", "store": {"key": "de"}}, "o-1") == {
        "country": "DE",
        "store": "de",
    }
    assert market_of({"stores": [{"key": "a"}, {"key": "b"}]}, "c-1") == {"store": "a,b"}
    assert market_of(None, "SKU-1@de_DE") == {"locale": "de_DE"}
    assert market_of(None, "c-1") == {}


def test_sync_letters_name_what_a_redrive_reads_again() -> None:
    rejections = [
        Rejection(record_id="p-1", stage="insider", reasons=["refused"]),
        Rejection(record_id="SKU-1@en_US", stage="mapping", reasons=["no price"], source_id="p-9"),
    ]
    order, item = sync_letters(
        rejections[:1], resource="payments", run="delta-orders", skip_hook=False, path="delta"
    ) + sync_letters(
        rejections[1:], resource="inventory", run="delta-catalog", skip_hook=False, path="delta"
    )
    assert (order.entity, order.record_id, order.path, order.reasons) == (
        "order",
        "p-1",
        "delta",
        ["insider: refused"],
    )
    assert order.redrive == {"resource": "orders", "id": "p-1", "skip_hook": False}
    assert (item.entity, item.record_id, item.market) == (
        "catalog-item",
        "SKU-1@en_US",
        {"locale": "en_US"},
    )
    assert item.redrive == {"resource": "products", "id": "p-9", "skip_hook": False}
    assert order.key != item.key


def _letter(**overrides: object) -> DeadLetter:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, object] = {
        "entity": "customer",
        "record_id": "c-1",
        "reasons": ["mapping: no usable identifier"],
        "run": "backfill-customers-all",
        "first_seen": now,
        "last_seen": now,
        "path": "backfill",
        "redrive": {"resource": "customers", "id": "c-1", "skip_hook": True},
    }
    return DeadLetter.model_validate({**values, **overrides})


def test_show_explains_how_each_kind_of_letter_is_redriven() -> None:
    sync = _letter()
    journey = _letter(path=None, redrive={"signal": {"kind": "storefront"}})
    nothing = _letter(redrive=None)
    assert [is_sync_letter(letter) for letter in (sync, journey, nothing)] == [True, False, False]
    assert "reads customers c-1 again from commercetools" in how_to_redrive(sync)
    assert "goes back to its shard" in how_to_redrive(journey)
    assert "purge" in how_to_redrive(nothing)
    assert summary(journey)["path"] == "realtime"  # letters from before paths were kept
    assert [summary(letter)["redrivable"] for letter in (sync, journey, nothing)] == [
        True,
        True,
        False,
    ]


def test_retry_and_purge_need_keys_or_all() -> None:
    for words in (["dlq", "retry"], ["dlq", "purge", "k1", "--all"]):
        args = _parser().parse_args(words)
        with pytest.raises(UsageError):
            asyncio.run(args.handler(args))
    assert isinstance(_parser().parse_args(["dlq", "list", "--path", "delta"]), argparse.Namespace)
    with pytest.raises(SystemExit):
        _parser().parse_args(["dlq", "list", "--path", "nowhere"])


def test_search_attribute_values() -> None:
    updates = run_updates("backfill", "customers")
    assert {(u.key.name, u.value) for u in updates} == {
        (RUN_KIND.name, "backfill"),
        (OUTCOME.name, "running"),
        (ENTITY.name, "customers"),
    }
    attributes = run_attributes("redrive", customer_id="c-1", outcome="completed")
    assert attributes.get(CUSTOMER_ID) == "c-1"
    assert attributes.get(OUTCOME) == "completed"
    assert attributes.get(ENTITY) is None
    [outcome] = outcome_update("drift")
    assert (outcome.key.name, outcome.value) == ("CtOutcome", "drift")
    flags = dev_server_flags()
    assert flags.count("--search-attribute") == 6
    assert "CtCustomerId=Keyword" in flags
    assert "CtTimerDueAt=Datetime" in flags


def test_backfill_details_show_each_phase() -> None:
    phase = EntityProgress(entity="customers", status="running", total=10, chunks=2)
    phase.stats.processed, phase.stats.sent, phase.stats.rejected = 4, 3, 1
    progress = BackfillProgress(
        target="all",
        window=Window(),
        status="running",
        phases=[phase, EntityProgress(entity="orders")],
    )
    details = BackfillWorkflow._details(progress)
    assert "**all backfill running**" in details
    assert "customers running: processed 4 of 10, sent 3, skipped 0, rejected 1" in details
    assert "orders pending: processed 0," in details


def test_redrive_ids_are_readable() -> None:
    assert redrive_workflow_id("20260101T000000", ["abcdef0123456789"]) == (
        "redrive-20260101T000000-abcdef012345"
    )
    assert redrive_workflow_id("20260101T000000", ["a", "b"]) == "redrive-20260101T000000-2-letters"


def _stored(letter: DeadLetter) -> dict[str, Any]:
    """A letter as its custom object comes back from commercetools."""
    return {"value": letter.model_dump(mode="json", exclude={"version"}), "version": 1}


class _CustomObjects:
    """Pages of the letters' container as commercetools gives them: in key order, which
    says nothing about age."""

    def __init__(self, *pages: list[DeadLetter]) -> None:
        self._pages = pages
        self.pages_read = 0

    async def pages(self, resource: str, *, where: str | None = None) -> AsyncIterator[Any]:
        for page in self._pages:
            self.pages_read += 1
            yield SimpleNamespace(results=[_stored(letter) for letter in page])


def _seen(day: int, record_id: str, entity: str = "customer") -> DeadLetter:
    moment = datetime(2026, 1, day, tzinfo=UTC)
    return _letter(record_id=record_id, entity=entity, first_seen=moment, last_seen=moment)


def test_list_returns_the_oldest_letters_whatever_page_they_are_on() -> None:
    # Given a newer letter on the first page, and older ones on the second
    newest, oldest, middle = _seen(3, "c-3"), _seen(1, "c-1"), _seen(2, "o-2", "order")
    ct = _CustomObjects([newest], [oldest, middle])
    store = DeadLetterStore(cast(CommercetoolsClient, ct))
    # When a few are listed
    one, two = asyncio.run(store.list(limit=1)), asyncio.run(store.list(limit=2))
    customers = asyncio.run(store.list("customer", limit=5))
    # Then they are the oldest, oldest first, at most the limit, filters applied
    assert [letter.record_id for letter in one] == ["c-1"]
    assert [letter.record_id for letter in two] == ["c-1", "o-2"]
    assert [letter.record_id for letter in customers] == ["c-1", "c-3"]
    assert ct.pages_read == 6  # every page, every time


class _Store:
    """The letters by key; `once`: each is handed out once (purged, or delivered by
    another retry, between two reads)."""

    def __init__(self, *letters: DeadLetter, once: bool = False) -> None:
        self._letters = {letter.key: letter for letter in letters}
        self._once = once

    async def get(self, key: str) -> DeadLetter | None:
        return self._letters.pop(key, None) if self._once else self._letters.get(key)


def _retry(store: _Store, keys: list[str]) -> RetryReport:
    return asyncio.run(
        retry(
            cast(DeadLetterStore, store),
            cast(Client, None),  # nothing here is handed to a shard or a workflow
            task_queue="sync",
            journey_task_queue="journeys",
            shards=1,
            keys=keys,
        )
    )


def test_retrying_a_letter_with_nothing_to_send_again_is_a_failure() -> None:
    # Given a letter with no re-drive payload (only a purge removes it)
    stuck = _letter(path="realtime", redrive=None)
    # When it is retried
    report = _retry(_Store(stuck), [stuck.key])
    # Then it is named as not re-drivable, and the retry did not succeed (exit 1)
    assert report.journeys.not_redrivable == [stuck.key]
    assert report.failed


def test_retry_keeps_what_the_journey_redrive_found_missing() -> None:
    # Given a journey letter that is gone by the time its re-drive reads it, and a key
    # that names no letter at all
    journey = _letter(path=None, redrive={"signal": {"kind": "storefront"}})
    # When both are retried
    report = _retry(_Store(journey, once=True), [journey.key, "no-such-letter"])
    # Then both are reported not found, each where it was found missing
    assert report.journeys.missing == [journey.key]
    assert report.missing == ["no-such-letter"]
    assert report.failed
