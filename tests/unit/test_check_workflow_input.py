"""Consistency-check workflow inputs: retention windows and workflow ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ct_insider.checks.drift import MAX_LISTED, DriftReport
from workflows.check import (
    PURCHASE_RETENTION,
    CheckInput,
    check_workflow_id,
    retention_floor,
)

NOW = datetime(2026, 12, 3, 4, 5, 6, 789_000, tzinfo=UTC)


def test_without_since_only_what_insider_still_keeps_is_selected() -> None:
    assert retention_floor("orders", NOW) == NOW - timedelta(days=730) == NOW - PURCHASE_RETENTION
    assert retention_floor("customers", NOW) == NOW - timedelta(days=365)  # 12 months
    assert retention_floor("catalog", NOW) is None  # compared with our own store: no expiry


def test_checks_started_in_the_same_moment_get_distinct_readable_ids() -> None:
    params = CheckInput(entity="orders", repair=True)
    ids = {check_workflow_id(params, NOW) for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("check-orders-repair-20261203T040506.789Z-") for i in ids)


def test_the_freshness_margin_defaults_to_15_minutes() -> None:
    # >= settle grace (seconds) + a delta interval (minutes) + a margin
    assert CheckInput(entity="orders").recent_margin_seconds == 15 * 60


def test_carried_report_lists_stay_capped() -> None:
    total = DriftReport(entity="orders", source="insider-profile-api")
    part = DriftReport(entity="orders", source="insider-profile-api")
    part.repair_failures = [f"o-{n}: refused" for n in range(MAX_LISTED - 1)]
    part.unreadable = [f"o-{n}: bad" for n in range(MAX_LISTED - 1)]
    total.merge(part)
    total.merge(part)
    assert len(total.repair_failures) == len(total.unreadable) == MAX_LISTED
    assert total.drift_left
