"""Determinism guard: recorded histories of the journey shard replay on today's code.

The histories in tests/fixtures/histories/ were recorded by
tests/integration/test_journey_shard_workflow.py (`UPDATE_HISTORIES=1`). A change to
JourneyShardWorkflow that would make a running shard fail on its next replay (a command
added, removed or reordered) fails here. Re-record them only for a change that is meant
to be incompatible, and ship it with a versioning plan (workflow.patched, or a new
workflow type), since running shards replay their histories after every deploy.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from ct_insider.temporal import DATA_CONVERTER
from workflows.journey_shard import JourneyShardWorkflow, ShardInput

HISTORIES = sorted((Path(__file__).parent.parent / "fixtures" / "histories").glob("*.json"))


def _history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_recorded_histories_exist() -> None:
    assert len(HISTORIES) >= 8


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_recorded_shard_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[JourneyShardWorkflow],
        data_converter=DATA_CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(_history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@workflow.defn(name="JourneyShardWorkflow")
class ShardThatSleepsFirst:
    """An incompatible change: a timer before anything else."""

    @workflow.signal
    def deliver(self, signals: list[object]) -> None:
        pass

    @workflow.run
    async def run(self, params: ShardInput) -> None:
        await workflow.sleep(timedelta(seconds=1))


async def test_an_incompatible_change_fails_the_replay() -> None:
    # Given a history recorded with deliveries (local activity markers)
    [path] = [p for p in HISTORIES if p.stem.startswith("test_a_run_asks_once")]
    replayer = Replayer(
        workflows=[ShardThatSleepsFirst],
        data_converter=DATA_CONVERTER,
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    # When it is replayed on code that starts a timer instead
    result = await replayer.replay_workflow(_history(path), raise_on_replay_failure=False)
    # Then the replay reports the nondeterminism
    assert result.replay_failure is not None
