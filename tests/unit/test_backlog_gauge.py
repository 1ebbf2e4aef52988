"""The journey backlog gauge reports shards described lately, never a value long gone."""

from __future__ import annotations

import time
from typing import Any, cast

from temporalio.client import Client

from bridge.commit import BACKLOG_REPORTED_SECONDS, ShardCommitter


def test_a_shard_not_described_for_a_while_is_left_out_of_the_backlog_gauge() -> None:
    # Given a committer (no Temporal call is made) that described shard 1 long ago, at 90%
    # of the limit, and shard 2 just now, at 25%
    committer = ShardCommitter(cast(Client, cast(Any, None)), "q", shards=4, backlog_bytes=8_000)
    old, fresh = committer._lane(1), committer._lane(2)
    old.history_bytes, fresh.history_bytes = 7_200, 2_000
    old.checked_at = time.monotonic() - BACKLOG_REPORTED_SECONDS - 1
    fresh.checked_at = time.monotonic()
    # When the gauge reads the backlog
    backlog = committer.journey_backlog()
    # Then only the fresh value is reported: shard 1 may have continued-as-new or been
    # retired by a reshard since, and an alert on its old value would never clear
    assert backlog == {2: 0.25}
