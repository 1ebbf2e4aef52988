"""CatalogChangeWorkflow: one per product (or category) with pending realtime changes.

A burst of messages about the same product (a price, its discount, a stock change in quick
succession) becomes one refresh: the first change waits `coalesce_seconds` for the rest.
The refresh sends only what differs from what Insider holds, so repeats cost nothing.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.catalog import CatalogActivities, CatalogRefresh
    from activities.errors import NON_RETRYABLE_TYPES
    from ct_insider.search_attributes import (
        PATCH_ID,
        Outcome,
        outcome_update,
        run_updates,
    )
    from ct_insider.sync.reports import SyncStats


class CatalogChange(BaseModel):
    dedupe_key: str
    product_id: str | None = None
    category_id: str | None = None

    def workflow_key(self) -> str:
        return f"product-{self.product_id}" if self.product_id else f"category-{self.category_id}"


class CatalogChangeInput(BaseModel):
    key: str
    coalesce_seconds: float = Field(default=1.0, ge=0)
    idle_seconds: float = Field(default=60.0, gt=0)
    max_refreshes_per_run: int = Field(default=200, ge=1)
    pending: list[CatalogChange] = Field(default_factory=list)  # carried by continue-as-new


def catalog_change_workflow_id(key: str) -> str:
    return f"catalog-{key}"


@workflow.defn
class CatalogChangeWorkflow:
    @workflow.init
    def __init__(self, params: CatalogChangeInput) -> None:
        self._pending: list[CatalogChange] = list(params.pending)
        self._stats = SyncStats()

    @workflow.signal
    def changed(self, changes: list[CatalogChange]) -> None:
        self._pending.extend(changes)

    @workflow.run
    async def run(self, params: CatalogChangeInput) -> SyncStats:
        # Runs started before these workflows set search attributes replay without them.
        searchable = workflow.patched(PATCH_ID)
        if searchable:
            workflow.upsert_search_attributes(run_updates("catalog-change", "catalog"))
        for _ in range(params.max_refreshes_per_run):
            try:
                await workflow.wait_condition(
                    lambda: bool(self._pending), timeout=timedelta(seconds=params.idle_seconds)
                )
            except TimeoutError:
                if not self._pending:
                    if searchable:
                        outcome: Outcome = "rejections" if self._stats.rejected else "completed"
                        workflow.upsert_search_attributes(outcome_update(outcome))
                    return self._stats
            await workflow.sleep(timedelta(seconds=params.coalesce_seconds))
            batch, self._pending = self._pending, []
            refresh = CatalogRefresh(
                product_ids=sorted({c.product_id for c in batch if c.product_id}),
                category_ids=sorted({c.category_id for c in batch if c.category_id}),
            )
            stats = await workflow.execute_activity_method(
                CatalogActivities.refresh_catalog,
                refresh,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(minutes=1),
                    non_retryable_error_types=NON_RETRYABLE_TYPES,
                ),
            )
            self._stats.add(stats)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(params.model_copy(update={"pending": self._pending}))

    @workflow.query
    def stats(self) -> SyncStats:
        return self._stats
