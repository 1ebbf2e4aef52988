"""Cancel timer workflows (ct_insider/timers/kinds.py) from an activity, e.g. before an
erasure: a reminder sent after it would create the person's profile again."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.timers.kinds import CANCEL_SIGNAL, CancelTimers, TimerKind, workflow_id


async def cancel_timer_workflows(
    client: Client, kind: TimerKind, keys: Sequence[str], reason: str
) -> int:
    """Signal CANCEL_SIGNAL to the open timer workflows of `kind` with these keys; returns
    how many were open."""
    cancelled = 0
    for key in dict.fromkeys(keys):
        handle = client.get_workflow_handle(workflow_id(kind, key))
        try:
            await handle.signal(CANCEL_SIGNAL, CancelTimers(reason=reason))
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            continue
        cancelled += 1
    return cancelled
