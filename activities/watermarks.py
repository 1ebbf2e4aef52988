"""Read and record a delta sync's watermark in the store outside the workflow run."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from temporalio import activity

from activities.errors import as_application_error
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.sync.watermarks import StoredWatermark, WatermarkStore


class LoadWatermarkInput(BaseModel):
    entity: str


class SaveWatermarkInput(BaseModel):
    entity: str
    watermark: datetime


class AdvanceWatermarkInput(BaseModel):
    entity: str
    watermark: datetime
    # The backfill read only what changed since then (--since): a stored watermark older than
    # it is left where it is (moving it would skip what changed in between).
    covered_since: datetime | None = None


class WatermarkActivities:
    def __init__(self, store: WatermarkStore) -> None:
        self._store = store

    @activity.defn
    async def load_watermark(self, params: LoadWatermarkInput) -> StoredWatermark | None:
        try:
            return await self._store.get(params.entity)
        except CommercetoolsError as exc:
            raise as_application_error(exc) from exc

    @activity.defn
    async def save_watermark(self, params: SaveWatermarkInput) -> None:
        info = activity.info()
        try:
            await self._store.save(
                params.entity,
                params.watermark,
                workflow_id=info.workflow_id,
                run_id=info.workflow_run_id,
            )
        except CommercetoolsError as exc:
            raise as_application_error(exc) from exc

    @activity.defn
    async def advance_watermark(self, params: AdvanceWatermarkInput) -> StoredWatermark:
        """Store the watermark unless a newer one is stored; returns what is stored after."""
        info = activity.info()
        try:
            return await self._store.advance(
                params.entity,
                params.watermark,
                covered_since=params.covered_since,
                workflow_id=info.workflow_id,
                run_id=info.workflow_run_id,
            )
        except CommercetoolsError as exc:
            raise as_application_error(exc) from exc
