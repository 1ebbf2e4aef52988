"""Where a delta sync resumes from, as `ct-insider sync delta` and `ct-insider status` show it.

A delta started without --since resumes from the watermark its last run, or the last
completed backfill of its entity, stored outside the workflow (ct_insider/sync/watermarks.py);
with none stored it is refused, saying what to run or pass (it would otherwise start from
now and lose what changed since the backfill read its pages).
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
from workflows.watermarks import no_watermark_reason

ResumeSource = Literal["running", "since", "stored", "none"]


class ResumePoint(BaseModel):
    entity: str
    source: ResumeSource
    watermark: datetime | None = None
    # The run that left a stored watermark (a delta's, or a backfill's).
    written_by: str | None = None

    def sentence(self) -> str:
        when = self.watermark.isoformat() if self.watermark else "-"
        return {
            "running": "already running: attached to it (see ct-insider status)",
            "since": f"starts from --since {when}",
            "stored": f"resumes from its stored watermark {when} (left by {self.written_by})",
            "none": no_watermark_reason(self.entity),
        }[self.source]


def resume_point(
    entity: str, *, running: bool, since: datetime | None, stored: StoredWatermark | None
) -> ResumePoint:
    if running:
        return ResumePoint(entity=entity, source="running")
    if since is not None:
        return ResumePoint(entity=entity, source="since", watermark=since)
    if stored is not None:
        return ResumePoint(
            entity=entity,
            source="stored",
            watermark=stored.watermark,
            written_by=stored.workflow_id or "-",
        )
    return ResumePoint(entity=entity, source="none")


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
