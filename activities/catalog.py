"""Realtime catalog refreshes: bring a few products (or a category's products) up to date."""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity

from activities.base import ConnectorActivities
from activities.errors import as_application_error
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.deadletters import DeadLetterStore
from ct_insider.insider.errors import InsiderError
from ct_insider.sync.rejected import sync_letters
from ct_insider.sync.reports import SyncStats


class CatalogRefresh(BaseModel):
    product_ids: list[str] = Field(default_factory=list)
    category_ids: list[str] = Field(default_factory=list)
    skus: list[str] = Field(default_factory=list)  # refresh the products holding them


class CatalogActivities(ConnectorActivities):
    @activity.defn
    async def refresh_catalog(self, params: CatalogRefresh) -> SyncStats:
        """Idempotent: it sends what differs from Insider's fingerprints, so a retry is safe.
        Refused items are dead-lettered (a retry adds an attempt to the same letters)."""
        try:
            stats = SyncStats()
            if params.product_ids or params.skus:
                stats.add(await self._catalog.refresh(params.product_ids, skus=params.skus))
            if params.category_ids:
                stats.add(
                    await self._catalog.send_for_categories(
                        [{"id": c} for c in params.category_ids]
                    )
                )
            if stats.rejections:
                letters = sync_letters(
                    stats.rejections,
                    resource="products",
                    run=activity.info().workflow_id or "catalog-change",
                    skip_hook=False,
                    path="realtime",
                )
                await DeadLetterStore(self._ct).put(letters)
            return stats
        except (CommercetoolsError, InsiderError) as exc:
            raise as_application_error(exc) from exc
