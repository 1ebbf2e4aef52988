"""A delta sync's watermark in the store outside the run (workflow side: schedules activities).

Guarded by a patch: a delta workflow that started before the store existed replays without
these activities and keeps its watermark in its input only, as it always did.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.watermarks import LoadWatermarkInput, SaveWatermarkInput, WatermarkActivities
    from workflows.chunks import RETRY

WATERMARK_STORE_PATCH = "delta-watermark-store"
TIMEOUT = timedelta(minutes=2)


async def stored_watermark(entity: str) -> datetime | None:
    """Where the last run of this entity's delta got to (None: never ran, or an old run)."""
    if not workflow.patched(WATERMARK_STORE_PATCH):
        return None
    stored = await workflow.execute_activity_method(
        WatermarkActivities.load_watermark,
        LoadWatermarkInput(entity=entity),
        start_to_close_timeout=TIMEOUT,
        retry_policy=RETRY,
    )
    return stored.watermark if stored is not None else None


async def store_watermark(entity: str, watermark: datetime) -> None:
    if not workflow.patched(WATERMARK_STORE_PATCH):
        return
    await workflow.execute_activity_method(
        WatermarkActivities.save_watermark,
        SaveWatermarkInput(entity=entity, watermark=watermark),
        start_to_close_timeout=TIMEOUT,
        retry_policy=RETRY,
    )
