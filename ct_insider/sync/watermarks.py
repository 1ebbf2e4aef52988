"""Where each delta sync has read up to, kept outside any workflow run.

A delta workflow that failed or was terminated takes its watermark with it; started again
without --since it would begin at "now" and silently skip what changed while it was down.
So every synced window also records its end in the retailer's commercetools project:

    container `ct-insider-watermarks`, key = delta entity (customers, orders, catalog),
    value {"watermark": "<ISO 8601>", "workflow_id": "...", "run_id": "..."}

and a delta started without a watermark resumes from it. The last writer wins: only one
delta workflow runs per entity, and one started again with an earlier --since must be able
to move the watermark back.

A completed backfill also leaves one (`advance`): the moment its phase of that entity
started reading, less CLOCK_SKEW_ALLOWANCE, so a delta started after it without --since
re-reads whatever changed while (and after) the backfill read its pages. It never moves a
newer watermark back: a delta that ran meanwhile already synced up to its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsConflict, CommercetoolsNotFound

CONTAINER = "ct-insider-watermarks"
# lastModifiedAt is stamped by commercetools' clock, a backfill's start by ours (the
# workflow's): the watermark a backfill leaves starts this much earlier, so a skew between
# the clocks up to it loses nothing (re-reading a few minutes of changes costs next to
# nothing: unchanged versions and delivered order events are skipped).
CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
# Concurrent writers are the entity's one delta and backfills: a handful of retries suffice.
ADVANCE_ATTEMPTS = 5


class StoredWatermark(BaseModel):
    entity: str
    watermark: AwareDatetime
    # The run that wrote it (for operators wondering where it came from).
    workflow_id: str | None = None
    run_id: str | None = None


class WatermarkStore:
    def __init__(self, ct: CommercetoolsClient, container: str = CONTAINER) -> None:
        self._ct = ct
        self._container = container

    async def get(self, entity: str) -> StoredWatermark | None:
        stored, _ = await self._read(entity)
        return stored

    async def _read(self, entity: str) -> tuple[StoredWatermark | None, int]:
        """The stored watermark and its object's version (0: none stored)."""
        try:
            obj = await self._ct.get_json(f"custom-objects/{self._container}/{entity}")
        except CommercetoolsNotFound:
            return None, 0
        stored = StoredWatermark.model_validate({**obj["value"], "entity": entity})
        return stored, int(obj["version"])

    async def advance(
        self,
        entity: str,
        watermark: datetime,
        *,
        covered_since: datetime | None = None,
        workflow_id: str | None = None,
        run_id: str | None = None,
    ) -> StoredWatermark:
        """Store `watermark` unless a newer one is stored - or, when what was read covers
        only changes since `covered_since`, unless an older one than that is stored (moving
        it would skip what changed between the two); returns what is stored after.

        Versioned (0: create only), so a delta saving its window meanwhile is never
        overwritten by an older watermark: on a conflict it reads again and compares again."""
        for _ in range(ADVANCE_ATTEMPTS):
            stored, version = await self._read(entity)
            if stored is not None and (
                stored.watermark >= watermark
                or (covered_since is not None and stored.watermark < covered_since)
            ):
                return stored
            wanted = StoredWatermark(
                entity=entity, watermark=watermark, workflow_id=workflow_id, run_id=run_id
            )
            try:
                await self._ct.post_json(
                    "custom-objects",
                    {
                        "container": self._container,
                        "key": entity,
                        "version": version,
                        "value": wanted.model_dump(mode="json", exclude={"entity"}),
                    },
                )
            except CommercetoolsConflict:
                continue  # written meanwhile: compare with what is there now
            return wanted
        raise CommercetoolsConflict(
            409,
            f"watermark {entity}: still written concurrently after {ADVANCE_ATTEMPTS} attempts",
            ["ConcurrentModification"],
        )

    async def save(
        self,
        entity: str,
        watermark: datetime,
        *,
        workflow_id: str | None = None,
        run_id: str | None = None,
    ) -> None:
        stored = StoredWatermark(
            entity=entity, watermark=watermark, workflow_id=workflow_id, run_id=run_id
        )
        # No version: overwrite whatever is there (see the module docstring).
        await self._ct.post_json(
            "custom-objects",
            {
                "container": self._container,
                "key": entity,
                "value": stored.model_dump(mode="json", exclude={"entity"}),
            },
        )
