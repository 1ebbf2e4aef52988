"""Binds the entity an activity works on to every log line it writes.

The workflow id, run id and activity type come from the SDK's activity info
(ct_insider/logging.py reads it for each line); the entity is part of the activity's input
(`SyncChunkInput.entity`, `CountInput.entity`, ...), which only the worker sees.
"""

from __future__ import annotations

from typing import Any

import structlog
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)


class LogContextInterceptor(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BindEntity(next)


class _BindEntity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        entity = getattr(input.args[0], "entity", None) if input.args else None
        if entity is None:
            return await super().execute_activity(input)
        # Each activity runs in a task of its own: the binding ends with it.
        with structlog.contextvars.bound_contextvars(entity=str(entity)):
            return await super().execute_activity(input)
