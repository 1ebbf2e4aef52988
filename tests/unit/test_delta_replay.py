"""Delta syncs that started before the watermark store replay on today's code.

tests/fixtures/delta_histories/ holds first runs of DeltaSyncWorkflow recorded with the code
from before the watermark store (commit ad8e8de, a stub sync_chunk activity, four windows
and a continue-as-new): one started with a watermark, one launched "from now". A running
delta replays its history after every deploy, so the store's activities are guarded by
`workflow.patched` and must not appear where those histories have none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.replay_helpers import patch_taken_as_applied, recorded_histories, replay_failure
from workflows.delta import DeltaSyncWorkflow
from workflows.watermarks import NO_WATERMARK_REFUSED_PATCH, WATERMARK_STORE_PATCH

HISTORIES = recorded_histories("delta_histories")


def test_recorded_histories_exist() -> None:
    assert [p.stem for p in HISTORIES] == ["first-launch-from-now", "watermark-given"]


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_a_delta_from_before_the_watermark_store_replays(path: Path) -> None:
    failure = await replay_failure(DeltaSyncWorkflow, path)
    assert failure is None, f"{path.name}: {failure}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_the_store_unguarded_would_break_their_replay(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the watermark store's patch taken as applied in every history
    patch_taken_as_applied(monkeypatch, WATERMARK_STORE_PATCH)
    # When an old history replays, Then the store's activities make it nondeterministic
    failure = await replay_failure(DeltaSyncWorkflow, path)
    assert failure is not None
    assert "Nondeterminism" in str(failure)


async def test_refusing_a_delta_without_watermark_unguarded_would_break_a_run_from_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the refusal's patch taken as applied in a history launched "from now"
    [from_now] = [p for p in HISTORIES if p.stem == "first-launch-from-now"]
    patch_taken_as_applied(monkeypatch, NO_WATERMARK_REFUSED_PATCH)
    # When it replays, Then the refusal would end a run that synced windows: the patch
    # guards it (test_a_delta_from_before_the_watermark_store_replays replays it as it ran)
    assert await replay_failure(DeltaSyncWorkflow, from_now) is not None
