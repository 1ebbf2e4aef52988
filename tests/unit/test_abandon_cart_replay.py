"""Cart workflows recorded by earlier versions replay on today's code (a cart's workflow
lives for days: every deploy replays the histories of the carts it follows).

tests/fixtures/cart_histories/ is recorded by
`RECORD_CART_HISTORIES=1 pytest tests/integration/test_abandon_cart_workflow.py -k cost`
(payloads in clear); a change that fails this test goes behind `workflow.patched`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.replay_helpers import recorded_histories, replay_failure
from workflows.cart import CartWorkflow

HISTORIES = recorded_histories("cart_histories")


def test_abandon_recorded_cart_histories_exist() -> None:
    assert [p.stem for p in HISTORIES] == ["reminded-then-ordered"]


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_abandon_recorded_cart_histories_replay(path: Path) -> None:
    # Given a cart history recorded by an earlier version, When it replays on today's code
    failure = await replay_failure(CartWorkflow, path)
    # Then it replays without nondeterminism
    assert failure is None, failure
