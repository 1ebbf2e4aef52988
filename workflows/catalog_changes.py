"""CatalogChangeWorkflow: a few long-lived workflows that batch realtime catalog changes.

Products are spread over `CATALOG_CHANGE_SHARDS` workflows by a hash of their id (categories
have one of their own). The first change waits `coalesce_seconds` for the rest; then one
refresh brings every product pending in the workflow up to date - one commercetools read per
resource and one Insider catalog request for all of them - so a price import touching
thousands of products costs a few catalog requests, not one per product: Insider allows 60
catalog requests a minute per account. The refresh sends only what differs from what Insider
holds, so repeats cost nothing. (Before 2026-12, one workflow per product: runs begun then
finish as they began.)
"""

from __future__ import annotations

import zlib
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


# Workflows the products are spread over. Two, not one: one refresh's commercetools reads
# overlap the other's; more would only queue at the worker's catalog pacing (one request a
# second). Changing it is safe at any time: a change goes to whichever workflow its bridge
# names, and each refreshes what it was given.
CATALOG_CHANGE_SHARDS = 2
# Products one refresh brings up to date at most: its reads stay a few pages, its Insider
# request well within 10,000 items (3 variants x 3 markets x 500 = 4,500).
MAX_PRODUCTS_PER_REFRESH = 500
# Pending changes a run hands to the next at most (~130 bytes each: ~260 KB); while more are
# pending it refreshes on instead of continuing as new.
MAX_CARRIED_CHANGES = 2_000
# History events, or bytes, after which a run continues as new once its pending changes fit
# (a `changed` signal of 500 changes is ~65 KB: a flood of them grows the history by bytes
# long before by events).
MAX_HISTORY_EVENTS = 10_000
MAX_HISTORY_BYTES = 4_000_000
# Runs before this patch ran one workflow per product and continued as new after
# max_refreshes_per_run only.
BATCHED_PATCH = "catalog-changes-batched"


class CatalogChange(BaseModel):
    dedupe_key: str
    product_id: str | None = None
    category_id: str | None = None
    # Stock and standalone prices name a SKU: the refresh finds the products holding it, one
    # query for a whole batch (the bridge used to query once per message).
    sku: str | None = None

    def workflow_key(self) -> str:
        if self.category_id and not (self.product_id or self.sku):
            return "categories"
        product = self.product_id or self.sku or ""
        return f"products-{zlib.crc32(product.encode()) % CATALOG_CHANGE_SHARDS}"

    def subject(self) -> str:
        """What a refresh brings up to date: changes with one subject are one refresh."""
        if self.product_id:
            return f"product:{self.product_id}"
        if self.sku:
            return f"sku:{self.sku}"
        return f"category:{self.category_id}"


class CatalogChangeInput(BaseModel):
    key: str
    # The first change after a quiet spell waits this long for the rest of its burst; under
    # load, changes pile up while a refresh runs anyway.
    coalesce_seconds: float = Field(default=0.5, ge=0)
    idle_seconds: float = Field(default=60.0, gt=0)
    max_refreshes_per_run: int = Field(default=200, ge=1)
    max_products_per_refresh: int = Field(default=MAX_PRODUCTS_PER_REFRESH, ge=1)
    pending: list[CatalogChange] = Field(default_factory=list)  # carried by continue-as-new


def catalog_change_workflow_id(task_queue: str, key: str) -> str:
    """Named after the task queue it runs on, like the journey shards, so deployments sharing
    a namespace (or tests sharing a server) keep their few long-lived workflows apart."""
    return f"{task_queue}-catalog-{key}"


@workflow.defn
class CatalogChangeWorkflow:
    @workflow.init
    def __init__(self, params: CatalogChangeInput) -> None:
        # By subject, in arrival order: a product changed twice before its refresh is
        # refreshed once, and what waits is bounded by the catalog's size.
        self._pending: dict[str, CatalogChange] = {c.subject(): c for c in params.pending}
        self._stats = SyncStats()

    @workflow.signal
    def changed(self, changes: list[CatalogChange]) -> None:
        for change in changes:
            self._pending.setdefault(change.subject(), change)

    def _next_batch(self, limit: int) -> list[CatalogChange]:
        """The oldest `limit` pending changes, taken out of pending."""
        subjects = list(self._pending)[:limit]
        return [self._pending.pop(subject) for subject in subjects]

    @workflow.run
    async def run(self, params: CatalogChangeInput) -> SyncStats:
        # Runs started before these workflows set search attributes replay without them.
        searchable = workflow.patched(PATCH_ID)
        if searchable:
            workflow.upsert_search_attributes(run_updates("catalog-change", "catalog"))
        batched = workflow.patched(BATCHED_PATCH)
        refreshes = 0
        while self._keep_running(params, refreshes, batched):
            refreshes += 1
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
            if batched:
                batch = self._next_batch(params.max_products_per_refresh)
            else:
                batch = self._next_batch(len(self._pending))
            refresh = CatalogRefresh(
                product_ids=sorted({c.product_id for c in batch if c.product_id}),
                category_ids=sorted({c.category_id for c in batch if c.category_id}),
                skus=sorted({c.sku for c in batch if c.sku}),
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
        workflow.continue_as_new(
            params.model_copy(update={"pending": list(self._pending.values())})
        )

    def _keep_running(self, params: CatalogChangeInput, refreshes: int, batched: bool) -> bool:
        """Whether this run refreshes again, rather than continue as new: it hands over its
        pending changes only once they fit the carried bound."""
        if not batched:
            return refreshes < params.max_refreshes_per_run
        if len(self._pending) > MAX_CARRIED_CHANGES:
            return True
        info = workflow.info()
        return (
            refreshes < params.max_refreshes_per_run
            and info.get_current_history_length() < MAX_HISTORY_EVENTS
            and info.get_current_history_size() < MAX_HISTORY_BYTES
            and not info.is_continue_as_new_suggested()
        )

    @workflow.query
    def stats(self) -> SyncStats:
        return self._stats
