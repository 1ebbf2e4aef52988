"""Replaying recorded workflow histories on today's code (the determinism guard of every
long-lived workflow: tests/unit/test_*replay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from ct_insider.temporal import DATA_CONVERTER

FIXTURES = Path(__file__).parent / "fixtures"


def recorded_histories(folder: str) -> list[Path]:
    """The histories recorded in tests/fixtures/<folder>/, by name."""
    return sorted((FIXTURES / folder).glob("*.json"))


async def replay_failure(
    workflow_class: type, path: Path, *, sandboxed: bool = True
) -> Exception | None:
    """What replaying the history at `path` on `workflow_class` failed with (None: it
    replayed). `sandboxed=False` for workflows whose worker runs them unsandboxed."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())  # noqa: ASYNC240
    replayer = (
        Replayer(workflows=[workflow_class], data_converter=DATA_CONVERTER)
        if sandboxed
        else Replayer(
            workflows=[workflow_class],
            data_converter=DATA_CONVERTER,
            workflow_runner=UnsandboxedWorkflowRunner(),
        )
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


def patch_taken_as_applied(monkeypatch: pytest.MonkeyPatch, patch_id: str) -> None:
    """`workflow.patched(patch_id)` answers True even where the history has no marker: what
    a change would do if it were not guarded by the patch."""
    real = workflow.patched
    monkeypatch.setattr(workflow, "patched", lambda name: name == patch_id or real(name))
