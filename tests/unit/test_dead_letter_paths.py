"""Sync rejections as dead letters, what `dlq` shows of them, and the search attributes."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

import pytest

from ct_insider.deadletters import DeadLetter
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
from ct_insider.sync.rejected import market_of, path_of_run, sync_letters
from ct_insider.sync.reports import Rejection
from ct_insider.sync.window import Window
from starters.cli import _parser
from starters.dlq import how_to_redrive, summary
from starters.output import UsageError
from workflows.backfill import BackfillProgress, BackfillWorkflow, EntityProgress
from workflows.redrive import redrive_workflow_id


@pytest.mark.parametrize(
    ("run", "path"),
    [
        ("backfill-customers-all", "backfill"),
        ("backfill-catalog-full-all", "catalog"),
        ("delta-orders", "delta"),
        ("catalog-product-p1", "realtime"),
        ("something-else", "other"),
    ],
)
def test_a_letter_path_comes_from_the_run(run: str, path: str) -> None:
    assert path_of_run(run) == path


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
        rejections[:1], resource="payments", run="delta-orders", skip_hook=False
    ) + sync_letters(rejections[1:], resource="inventory", run="delta-catalog", skip_hook=False)
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
    assert flags.count("--search-attribute") == 4
    assert "CtCustomerId=Keyword" in flags


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
