"""Drive one window through the sync_chunk activity, chunk after chunk, until it is done.

Shared by BackfillWorkflow and DeltaSyncWorkflow; runs inside workflow code, so it only
schedules activities and stays deterministic.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.errors import NON_RETRYABLE_TYPES
    from activities.sync import (
        CountInput,
        Resource,
        SyncActivities,
        SyncChunkInput,
        SyncChunkResult,
    )
    from ct_insider.deadletters import DeadLetterPath
    from ct_insider.sync.catalog import CatalogMode
    from ct_insider.sync.history import HistoryMode
    from ct_insider.sync.window import Window

RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


async def count_window(entity: Resource, window: Window) -> int:
    return await workflow.execute_activity_method(
        SyncActivities.count_records,
        CountInput(entity=entity, window=window),
        start_to_close_timeout=timedelta(minutes=2),
        retry_policy=RETRY,
    )


async def sync_chunk(
    *,
    path: DeadLetterPath,
    entity: Resource,
    window: Window,
    cursor: str | None,
    batch_size: int,
    skip_hook: bool,
    chunk_seconds: float,
    heartbeat_seconds: float,
    known_versions: dict[str, int] | None = None,
    remember_since: datetime | None = None,
    catalog_mode: CatalogMode = "changes",
    history: HistoryMode = "events",
) -> SyncChunkResult:
    """One time-boxed chunk; a crashed worker's chunk resumes on another from its heartbeat.
    `path`: the delivery path its rejected records are dead-lettered under (the workflow
    knows it; its id does not say, a schedule names its runs after itself)."""
    return await workflow.execute_activity_method(
        SyncActivities.sync_chunk,
        SyncChunkInput(
            lane=workflow.info().workflow_id,
            entity=entity,
            window=window,
            after_id=cursor,
            batch_size=batch_size,
            skip_hook=skip_hook,
            budget_seconds=chunk_seconds,
            known_versions=known_versions or {},
            remember_since=remember_since,
            catalog_mode=catalog_mode,
            history=history,
            path=path,
        ),
        start_to_close_timeout=timedelta(seconds=chunk_seconds * 6 + 300),
        heartbeat_timeout=timedelta(seconds=heartbeat_seconds),
        retry_policy=RETRY,
    )
