"""Cart workflows recorded by earlier versions replay on today's code (a cart's workflow
lives for days: every deploy replays the histories of the carts it follows).

tests/fixtures/cart_histories/ is recorded by
`RECORD_CART_HISTORIES=1 pytest tests/integration/test_abandon_cart_workflow.py -k cost`
(payloads in clear); a change that fails this test goes behind `workflow.patched`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from ct_insider.temporal import DATA_CONVERTER
from workflows.cart import CartWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "fixtures" / "cart_histories").glob("*.json"))


def test_abandon_recorded_cart_histories_exist() -> None:
    assert [p.stem for p in HISTORIES] == ["reminded-then-ordered"]


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_abandon_recorded_cart_histories_replay(path: Path) -> None:
    # Given a cart history recorded by an earlier version
    history = WorkflowHistory.from_json(path.stem, path.read_text())  # noqa: ASYNC240
    # When it replays on today's code
    replayer = Replayer(workflows=[CartWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    # Then it replays without nondeterminism
    assert result.replay_failure is None, result.replay_failure
