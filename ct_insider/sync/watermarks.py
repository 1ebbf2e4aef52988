"""Where each delta sync has read up to, kept outside any workflow run.

A delta workflow that failed or was terminated takes its watermark with it; started again
without --since it would begin at "now" and silently skip what changed while it was down.
So every synced window also records its end in the retailer's commercetools project:

    container `ct-insider-watermarks`, key = delta entity (customers, orders, catalog),
    value {"watermark": "<ISO 8601>", "workflow_id": "...", "run_id": "..."}

and a delta started without a watermark resumes from it. The last writer wins: only one
delta workflow runs per entity, and one started again with an earlier --since must be able
to move the watermark back.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsNotFound

CONTAINER = "ct-insider-watermarks"


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
        try:
            obj = await self._ct.get_json(f"custom-objects/{self._container}/{entity}")
        except CommercetoolsNotFound:
            return None
        return StoredWatermark.model_validate({**obj["value"], "entity": entity})

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
