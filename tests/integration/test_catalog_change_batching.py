"""Realtime catalog changes are batched across products: a few workflows, each refresh
bringing many products up to date (one Insider catalog request), bounded per refresh and in
what a run carries to the next."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.catalog import CatalogRefresh
from bridge.commit import ShardCommitter
from bridge.dispatch import Dispatcher
from ct_insider.sync.reports import SyncStats
from tests.conftest import eventually
from workflows.catalog_changes import (
    CATALOG_CHANGE_SHARDS,
    CatalogChange,
    CatalogChangeInput,
    CatalogChangeWorkflow,
    catalog_change_workflow_id,
)

pytestmark = pytest.mark.integration


class Refreshes:
    """The refresh activity, recording what each refresh was asked to bring up to date."""

    def __init__(self) -> None:
        self.batches: list[CatalogRefresh] = []

    @activity.defn(name="refresh_catalog")
    async def refresh(self, params: CatalogRefresh) -> SyncStats:
        self.batches.append(params)
        await asyncio.sleep(0.3)  # a refresh takes a while: changes pile up meanwhile
        return SyncStats(processed=len(params.product_ids))


def test_products_spread_over_a_few_workflows_and_categories_have_their_own() -> None:
    # Given changes to 1,000 different products and two categories
    keys = Counter(
        CatalogChange(dedupe_key=f"m-{n}", product_id=str(uuid.uuid4())).workflow_key()
        for n in range(1_000)
    )
    categories = {
        CatalogChange(dedupe_key=f"c-{n}", category_id=f"cat-{n}").workflow_key() for n in (1, 2)
    }
    # Then they go to CATALOG_CHANGE_SHARDS workflows, each taking a fair share
    assert set(keys) == {f"products-{n}" for n in range(CATALOG_CHANGE_SHARDS)}
    assert min(keys.values()) > 1_000 / CATALOG_CHANGE_SHARDS / 2
    assert categories == {"categories"}


async def test_a_burst_of_changes_is_refreshed_in_bounded_batches_each_product_once(
    client: Client, task_queue: str
) -> None:
    refreshes = Refreshes()
    products = [str(uuid.uuid4()) for _ in range(130)]
    # Given a catalog-change workflow refreshing at most 50 products at a time and
    # continuing as new after 2 refreshes
    params = CatalogChangeInput(
        key="products-0",
        coalesce_seconds=0.2,
        idle_seconds=1.0,
        max_refreshes_per_run=2,
        max_products_per_refresh=50,
    )
    workflow_id = catalog_change_workflow_id(task_queue, params.key)
    # When 130 products change in 13 deliveries, and the first 30 of them again, before
    # a worker takes the first (as when a price import floods the bridge)
    for start in range(0, 130, 10):
        changes = [
            CatalogChange(dedupe_key=f"m-{p}", product_id=p) for p in products[start : start + 10]
        ]
        await client.start_workflow(
            CatalogChangeWorkflow.run,
            params,
            id=workflow_id,
            task_queue=task_queue,
            start_signal="changed",
            start_signal_args=[changes],
        )
    again = [CatalogChange(dedupe_key=f"again-{p}", product_id=p) for p in products[:30]]
    await client.get_workflow_handle(workflow_id).signal("changed", again)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[CatalogChangeWorkflow],
        activities=[refreshes.refresh],
    ):
        # (it ends once idle)
        await client.get_workflow_handle(workflow_id).result()
    # Then three refreshes bring the 130 products up to date, each product once (a product
    # changed twice while waiting is refreshed once), none more than 50 at a time
    assert [len(b.product_ids) for b in refreshes.batches] == [50, 50, 30]
    assert sorted(p for b in refreshes.batches for p in b.product_ids) == sorted(products)
    # And the run continued as new after two refreshes, carrying the 30 still pending
    runs = await eventually(
        lambda: _runs(client, workflow_id), 30, until=lambda n: n == 2, what="two runs listed"
    )
    assert runs == 2


async def _runs(client: Client, workflow_id: str) -> int:
    return len([e async for e in client.list_workflows(f"WorkflowId = '{workflow_id}'")])


async def test_a_flood_of_changes_continues_as_new_by_history_bytes(
    client: Client, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workflows.catalog_changes as catalog_changes

    refreshes = Refreshes()
    # Given a catalog-change workflow whose runs may grow to 40 KB of history (in production
    # 4 MB) and may refresh 100 times
    monkeypatch.setattr(catalog_changes, "MAX_HISTORY_BYTES", 40_000)
    params = CatalogChangeInput(
        key="products-0", coalesce_seconds=0.1, idle_seconds=1.0, max_refreshes_per_run=100
    )
    workflow_id = catalog_change_workflow_id(task_queue, params.key)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[CatalogChangeWorkflow],
        activities=[refreshes.refresh],
        # (the sandbox would import the module afresh, without the bound set above)
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        # When deliveries of 50 changes each (~6 KB) keep arriving
        for delivery in range(12):
            changes = [
                CatalogChange(dedupe_key=f"m-{delivery}-{n}", product_id=str(uuid.uuid4()))
                for n in range(50)
            ]
            await client.start_workflow(
                CatalogChangeWorkflow.run,
                params,
                id=workflow_id,
                task_queue=task_queue,
                start_signal="changed",
                start_signal_args=[changes],
            )
            await asyncio.sleep(0.2)
        await client.get_workflow_handle(workflow_id).result()
    # Then every product was refreshed, and the workflow continued as new by bytes
    assert sum(len(b.product_ids) for b in refreshes.batches) == 600
    runs = await eventually(
        lambda: _runs(client, workflow_id), 30, until=lambda n: n >= 2, what="two runs listed"
    )
    assert runs >= 2


async def test_a_catalog_workflow_far_behind_gets_its_changes_refused_before_they_are_stored(
    client: Client, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bridge.dispatch as dispatch

    # Given the bridge's dispatcher (real Temporal, no worker: the workflow only grows) and a
    # catalog-change workflow that holds one delivery
    dispatcher = Dispatcher(
        client, task_queue, ShardCommitter(client, task_queue, shards=1, gauges=False)
    )
    product = str(uuid.uuid4())
    change = CatalogChange(dedupe_key="m-1", product_id=product)
    workflow_id = catalog_change_workflow_id(task_queue, change.workflow_key())
    await dispatcher.dispatch([change])
    handle = client.get_workflow_handle(workflow_id)
    size = (await handle.describe()).raw_description.workflow_execution_info.history_size_bytes
    # When its history is beyond what the bridge lets a catalog workflow hold (in production
    # 8 MB: a price import larger than it refreshes meanwhile)
    monkeypatch.setattr(dispatch, "CATALOG_BACKLOG_BYTES", size - 1)

    async def refused() -> bool:
        try:
            await dispatcher.dispatch([CatalogChange(dedupe_key="m-2", product_id=product)])
        except dispatch.CatalogBacklogged:
            return True
        return False

    # Then its next changes are refused (503 for the sender), once the bridge described it
    assert await eventually(refused, 15, what="changes refused")
    # And a refused delivery adds nothing to the workflow's history
    before = await signals_stored(handle)
    assert await refused()
    assert await signals_stored(handle) == before
    # And once it caught up, changes are taken again
    monkeypatch.setattr(dispatch, "CATALOG_BACKLOG_BYTES", 10**9)
    await dispatcher.dispatch([CatalogChange(dedupe_key="m-3", product_id=product)])
    assert await signals_stored(handle) == before + 1
    await handle.terminate()


async def signals_stored(handle: WorkflowHandle[Any, Any]) -> int:
    return len(
        [
            e
            async for e in handle.fetch_history_events()
            if e.HasField("workflow_execution_signaled_event_attributes")
        ]
    )
