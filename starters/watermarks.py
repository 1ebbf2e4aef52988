"""Where a delta sync resumes from, as `ct-insider sync delta` and `ct-insider status` show it.

A delta started without --since resumes from the watermark its last run stored outside the
workflow (ct_insider/sync/watermarks.py); only an entity that never synced starts from now.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.sync.watermarks import StoredWatermark
from workflows.delta import delta_workflow_id

ResumeSource = Literal["running", "since", "stored", "now"]


class ResumePoint(BaseModel):
    entity: str
    source: ResumeSource
    watermark: datetime | None = None

    def sentence(self) -> str:
        when = self.watermark.isoformat() if self.watermark else "-"
        return {
            "running": "already running: attached to it (see ct-insider status)",
            "since": f"starts from --since {when}",
            "stored": f"resumes from its stored watermark {when}",
            "now": "no stored watermark (never synced): starts from now",
        }[self.source]


def resume_point(
    entity: str, *, running: bool, since: datetime | None, stored: StoredWatermark | None
) -> ResumePoint:
    if running:
        return ResumePoint(entity=entity, source="running")
    if since is not None:
        return ResumePoint(entity=entity, source="since", watermark=since)
    if stored is not None:
        return ResumePoint(entity=entity, source="stored", watermark=stored.watermark)
    return ResumePoint(entity=entity, source="now")


async def delta_running(client: Client, entity: str) -> bool:
    """Whether the entity's delta workflow runs (asks the server, not a worker)."""
    try:
        described = await client.get_workflow_handle(delta_workflow_id(entity)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return described.status == WorkflowExecutionStatus.RUNNING


async def stored_watermarks(entities: Sequence[str]) -> dict[str, StoredWatermark | None]:
    """Each entity's stored watermark (needs the CTP_* settings: it lives in commercetools)."""
    from ct_insider.commercetools.client import CommercetoolsClient
    from ct_insider.config import CommercetoolsSettings, load
    from ct_insider.sync.watermarks import WatermarkStore

    async with CommercetoolsClient(load(CommercetoolsSettings)) as ct:
        store = WatermarkStore(ct)
        return {entity: await store.get(entity) for entity in entities}
