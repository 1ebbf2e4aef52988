"""A delta sync's watermark in the store outside the run (workflow side: schedules activities).

Guarded by a patch: a delta workflow that started before the store existed replays without
these activities and keeps its watermark in its input only, as it always did. A completed
backfill phase leaves its entity's watermark too (`leave_watermark`, its own patch: running
backfills replay without it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.watermarks import (
        AdvanceWatermarkInput,
        LoadWatermarkInput,
        SaveWatermarkInput,
        WatermarkActivities,
    )
    from workflows.chunks import RETRY

WATERMARK_STORE_PATCH = "delta-watermark-store"
# A delta with no watermark anywhere fails (before: started from now, losing what changed
# between a backfill's page reads and the delta's start).
NO_WATERMARK_REFUSED_PATCH = "delta-no-watermark-refused"
NO_WATERMARK_ERROR = "NoWatermark"
# A completed backfill phase leaves the watermark its entity's delta starts from.
BACKFILL_WATERMARK_PATCH = "backfill-leaves-watermark"
TIMEOUT = timedelta(minutes=2)

# What leaves an entity's watermark: the command an operator runs for it.
BACKFILL_COMMANDS = {
    "customers": "ct-insider backfill customers --wait",
    "orders": "ct-insider backfill orders --wait",
    "catalog": "ct-insider sync catalog --wait",
}


def no_watermark_reason(entity: str) -> str:
    """Why a delta of `entity` cannot start, and what to run or pass instead."""
    backfill = BACKFILL_COMMANDS.get(entity, f"ct-insider backfill {entity} --wait")
    return (
        f"{entity}: no stored watermark, so nothing says where the delta starts: run "
        f"`{backfill}` first (a completed backfill leaves it where its reading started), or "
        "pass --since <ISO 8601 timestamp> (only changes from then on are synced)"
    )


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


async def leave_watermark(
    entity: str, watermark: datetime, covered_since: datetime | None = None
) -> None:
    """A completed backfill's watermark for `entity`, unless a newer one is stored, or one
    older than `covered_since` (the backfill's --since: it did not read what changed before)."""
    if not workflow.patched(BACKFILL_WATERMARK_PATCH):
        return
    await workflow.execute_activity_method(
        WatermarkActivities.advance_watermark,
        AdvanceWatermarkInput(entity=entity, watermark=watermark, covered_since=covered_since),
        start_to_close_timeout=TIMEOUT,
        retry_policy=RETRY,
    )
