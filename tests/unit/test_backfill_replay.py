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
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from ct_insider.temporal import DATA_CONVERTER
from workflows.backfill import BackfillWorkflow
from workflows.watermarks import BACKFILL_WATERMARK_PATCH

FOLDER = Path(__file__).parent.parent / "fixtures" / "backfill_histories"
HISTORIES = sorted(FOLDER.glob("*.json"))


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_recorded_histories_exist() -> None:
    assert [p.stem for p in HISTORIES] == ["all-open-window", "customers-after-continue-as-new"]


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_backfill_from_before_the_watermark_replays(path: Path) -> None:
    replayer = Replayer(workflows=[BackfillWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(_history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_the_watermark_unguarded_would_break_a_running_backfill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the patch taken as applied in a history whose phases completed in one run
    real = workflow.patched
    monkeypatch.setattr(
        workflow,
        "patched",
        lambda patch_id: patch_id == BACKFILL_WATERMARK_PATCH or real(patch_id),
    )
    replayer = Replayer(workflows=[BackfillWorkflow], data_converter=DATA_CONVERTER)
    # When it replays, Then the watermark activity makes it nondeterministic
    result = await replayer.replay_workflow(
        _history(FOLDER / "all-open-window.json"), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
    assert "Nondeterminism" in str(result.replay_failure)


async def test_phases_carried_without_a_start_leave_no_watermark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the patch taken as applied, a run whose phase started before continue-as-new
    # (carried without read_from) replays unchanged: no moment to trust, no watermark
    real = workflow.patched
    monkeypatch.setattr(
        workflow,
        "patched",
        lambda patch_id: patch_id == BACKFILL_WATERMARK_PATCH or real(patch_id),
    )
    replayer = Replayer(workflows=[BackfillWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(
        _history(FOLDER / "customers-after-continue-as-new.json"), raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure
