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

from ct_insider.replenishment.contract import CHANGES_SIGNAL, WORKFLOW_TYPE, ReplenishmentInput
from ct_insider.replenishment.model import TimerChanges
from tests.replay_helpers import recorded_histories, replay_failure
from workflows.replenishment import ReplenishmentWorkflow

HISTORIES = recorded_histories("replenishment_histories")


def test_replenish_recorded_histories_exist() -> None:
    assert len(HISTORIES) >= 4


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replenish_recorded_history_replays(path: Path) -> None:
    failure = await replay_failure(ReplenishmentWorkflow, path, sandboxed=False)
    assert failure is None, f"{path.name}: {failure}"


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
    failure = await replay_failure(SleepsFirst, path, sandboxed=False)
    # Then the replay reports the nondeterminism
    assert failure is not None
