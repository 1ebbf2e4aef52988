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

from tests.replay_helpers import recorded_histories, replay_failure
from workflows.journey_shard import JourneyShardWorkflow, ShardInput

HISTORIES = recorded_histories("histories")


def test_recorded_histories_exist() -> None:
    assert len(HISTORIES) >= 8


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_recorded_shard_history_replays(path: Path) -> None:
    failure = await replay_failure(JourneyShardWorkflow, path, sandboxed=False)
    assert failure is None, f"{path.name}: {failure}"


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
    # When it is replayed on code that starts a timer instead
    failure = await replay_failure(ShardThatSleepsFirst, path, sandboxed=False)
    # Then the replay reports the nondeterminism
    assert failure is not None
