"""Re-drive activity: send dead-lettered sync records again (ct_insider/sync/redrive.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity

from activities.base import ConnectorActivities
from activities.errors import as_application_error
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.insider.errors import InsiderError
from ct_insider.sync.redrive import RedriveResult, SyncRedriver


class RedriveBatch(BaseModel):
    keys: list[str] = Field(default_factory=list)


class RedriveActivities(ConnectorActivities):
    @activity.defn
    async def redrive_letters(self, params: RedriveBatch) -> RedriveResult:
        """Safe to retry: a letter already delivered is gone (reported missing), order
        events go through the delivery ledger, customers and catalog items are upserts."""
        redriver = SyncRedriver(
            self._ct,
            self._insider,
            self._mapping,
            self._orders,
            self._catalog,
        )
        try:
            return await redriver.redrive(params.keys, run=activity.info().workflow_id or "redrive")
        except (CommercetoolsError, InsiderError) as exc:
            raise as_application_error(exc) from exc
