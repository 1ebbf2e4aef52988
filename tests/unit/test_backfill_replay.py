"""Backfills that started before they left watermarks replay on today's code.

tests/fixtures/backfill_histories/ holds runs of BackfillWorkflow recorded with the code from
before (commit 567cc6b, stub activities: a count of 4 and two chunks per phase): `all` in one
run, and the last run of a customers backfill that continued-as-new mid-phase (its phases
carried without the moment they started reading). A running backfill replays its history
after every deploy, so the watermark activity is guarded by `workflow.patched`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.replay_helpers import (
    FIXTURES,
    patch_taken_as_applied,
    recorded_histories,
    replay_failure,
)
from workflows.backfill import BackfillWorkflow
from workflows.watermarks import BACKFILL_WATERMARK_PATCH

FOLDER = FIXTURES / "backfill_histories"
HISTORIES = recorded_histories("backfill_histories")


def test_recorded_histories_exist() -> None:
    assert [p.stem for p in HISTORIES] == ["all-open-window", "customers-after-continue-as-new"]


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_backfill_from_before_the_watermark_replays(path: Path) -> None:
    failure = await replay_failure(BackfillWorkflow, path)
    assert failure is None, f"{path.name}: {failure}"


async def test_the_watermark_unguarded_would_break_a_running_backfill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the patch taken as applied in a history whose phases completed in one run
    patch_taken_as_applied(monkeypatch, BACKFILL_WATERMARK_PATCH)
    # When it replays, Then the watermark activity makes it nondeterministic
    failure = await replay_failure(BackfillWorkflow, FOLDER / "all-open-window.json")
    assert failure is not None
    assert "Nondeterminism" in str(failure)


async def test_phases_carried_without_a_start_leave_no_watermark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the patch taken as applied, a run whose phase started before continue-as-new
    # (carried without read_from) replays unchanged: no moment to trust, no watermark
    patch_taken_as_applied(monkeypatch, BACKFILL_WATERMARK_PATCH)
    failure = await replay_failure(
        BackfillWorkflow, FOLDER / "customers-after-continue-as-new.json"
    )
    assert failure is None, failure
