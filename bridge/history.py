"""How large the histories of the workflows the bridge signals are, as Temporal described
them lately: a workflow that does not keep up grows its history with every signal, and
Temporal terminates a run whose history passes 50 MB (or 51,200 events). The bridge refuses
(503, Retry-After) what it would add to one far behind, before accepting it, so the senders
keep it; never after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.logging import get_logger

log = get_logger(__name__)

RPC_TIMEOUT = timedelta(seconds=5)
# A workflow's history is described again at most this often (one describe per workflow
# the bridge signals, in the background: never on a request's path).
HISTORY_CHECK_SECONDS = 2.0
_UNREADABLE_MEMOS: set[str] = set()  # workflows whose memo could not be read, warned of


@dataclass(frozen=True)
class DescribedRun:
    history_bytes: int  # of the workflow's current run (0: none runs)
    flagged: bool  # its memo holds the flag asked about, true


async def described_run(
    client: Client, workflow_id: str, *, flag: str | None = None
) -> DescribedRun | None:
    """How large the workflow's current run is, and whether its memo holds `flag` true;
    None when Temporal could not say."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        return DescribedRun(0, False) if exc.status == RPCStatusCode.NOT_FOUND else None
    except RuntimeError:  # (a lazy client not connected yet)
        return None
    size = int(described.raw_description.workflow_execution_info.history_size_bytes)
    flagged = False
    if flag is not None and flag in described.raw_description.workflow_execution_info.memo.fields:
        try:
            flagged = await described.memo_value(flag, default=False) is True
        except Exception as exc:  # (e.g. a memo encrypted with a key this process lacks)
            if workflow_id not in _UNREADABLE_MEMOS:  # (once per workflow, not every describe)
                _UNREADABLE_MEMOS.add(workflow_id)
                log.warning("workflow memo unreadable", workflow_id=workflow_id, error=repr(exc))
    return DescribedRun(size, flagged)


async def described_history_bytes(client: Client, workflow_id: str) -> int | None:
    """The history size of the workflow's current run (0: none runs), None when Temporal
    could not say."""
    described = await described_run(client, workflow_id)
    return None if described is None else described.history_bytes


class HistoryWatch:
    """History sizes of a few workflows (the catalog-change workflows), each described in
    the background when asked for and older than HISTORY_CHECK_SECONDS."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._sizes: dict[str, int] = {}
        self._checked_at: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    def history_bytes(self, workflow_id: str) -> int:
        """As last described (0 until it was); asks Temporal again if that is a while ago."""
        now = time.monotonic()
        if now - self._checked_at.get(workflow_id, -HISTORY_CHECK_SECONDS) >= HISTORY_CHECK_SECONDS:
            self._checked_at[workflow_id] = now
            self._spawn(self._describe(workflow_id))
        return self._sizes.get(workflow_id, 0)

    async def _describe(self, workflow_id: str) -> None:
        size = await described_history_bytes(self._client, workflow_id)
        if size is not None:
            self._sizes[workflow_id] = size

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)  # the event loop only holds tasks weakly
        self._background.add(task)
        task.add_done_callback(self._background.discard)
