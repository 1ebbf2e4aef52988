"""Determinism guard: recorded ReplenishmentWorkflow histories replay on today's code.

Recorded by tests/integration/test_replenish_workflow.py (`UPDATE_HISTORIES=1`): a timer
that fires and sends, a repeat purchase moving the timer, a refund disarming it, an
operator's cancel. Customers' workflows stay open for the length of a period (weeks), so
a change that breaks their replay needs `workflow.patched`; re-record only with one.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from ct_insider.replenishment.contract import CHANGES_SIGNAL, WORKFLOW_TYPE, ReplenishmentInput
from ct_insider.replenishment.model import TimerChanges
from ct_insider.temporal import DATA_CONVERTER
from workflows.replenishment import ReplenishmentWorkflow

HISTORIES = sorted(
    (Path(__file__).parent.parent / "fixtures" / "replenishment_histories").glob("*.json")
)


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_replenish_recorded_histories_exist() -> None:
    assert len(HISTORIES) >= 4


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replenish_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[ReplenishmentWorkflow],
        data_converter=DATA_CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(_history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name=WORKFLOW_TYPE)
class SleepsFirst:
    """An incompatible change: a timer before anything else."""

    @workflow.signal(name=CHANGES_SIGNAL)
    def changes(self, batch: TimerChanges) -> None:
        pass

    @workflow.run
    async def run(self, params: ReplenishmentInput) -> None:
        await workflow.sleep(timedelta(seconds=1))


async def test_replenish_replay_catches_an_incompatible_change() -> None:
    # Given the history of a reminder sent, replayed on code that sleeps first
    [path] = [p for p in HISTORIES if "reminds_once" in p.stem]
    replayer = Replayer(
        workflows=[SleepsFirst],
        data_converter=DATA_CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(_history(path), raise_on_replay_failure=False)
    # Then the replay reports the nondeterminism
    assert result.replay_failure is not None
