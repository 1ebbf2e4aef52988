"""The dead-letter store on every sync path, `ct-insider dlq retry`, and the search
attributes operators find runs by (real worker, dev server, both emulators)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.deadletters import DeadLetter, DeadLetterStore
from ct_insider.mapping.config import MappingConfig
from ct_insider.search_attributes import RUN_ATTRIBUTES, ensure_search_attributes
from ct_insider.sync.rejected import dead_lettering, sync_letters
from ct_insider.sync.reports import Rejection, SyncStats
from emulators.seed import category_drafts, product_drafts, product_type_draft
from starters.backfill import start_backfill
from starters.cli import _parser
from starters.dlq import RedriveStillRunning, retry
from tests.conftest import Emulators, eventually, running_delta, running_worker
from workers.main import Workers
from workflows.backfill import BackfillInput, BackfillWorkflow
from workflows.catalog_changes import (
    CatalogChange,
    CatalogChangeInput,
    CatalogChangeWorkflow,
    catalog_change_workflow_id,
)

pytestmark = pytest.mark.integration

NO_IDENTIFIER = "mapping: no usable identifier (uuid, email or phone)"


async def letters_when(
    store: DeadLetterStore, count: int, within: float = 20.0, **filters: Any
) -> list[DeadLetter]:
    letters: list[DeadLetter] = await eventually(
        lambda: store.list(**filters),
        within,
        until=lambda letters: len(letters) >= count,
        what=f"{count} dead letters ({filters})",
    )
    return letters


async def listed(client: Client, query: str, run_id: str | None, within: float = 15.0) -> None:
    """Wait until a visibility query lists the run (visibility lags a little behind)."""
    assert run_id is not None

    async def found() -> set[str]:
        return {execution.run_id async for execution in client.list_workflows(query)}

    await eventually(found, within, until=lambda runs: run_id in runs, what=f"{query} listed")


def printed_json(out: str) -> Any:
    """The command's JSON document (the in-process worker logs to stdout before it)."""
    start = out.rfind("\n{\n")
    return json.loads(out[start + 1 :] if start >= 0 else out)


def keyless_customer(emu: Emulators, email: str) -> str:
    """A customer with no key: with uuids taken from keys, only its email identifies it."""
    [customer_id] = emu.seeder().bulk("customer", [{"email": email, "password": "x", "key": None}])
    return customer_id


async def test_a_rejected_customer_is_dead_lettered_and_redriven_once_fixed(
    client: Client,
    task_queue: str,
    clean_emulators: Emulators,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = clean_emulators
    # Given uuids taken from customer keys, two good customers and one with neither a key
    # nor a valid email
    emu.seeder().customers(2)
    bad_id = keyless_customer(emu, "not-an-email")
    async with (
        running_worker(client, task_queue, emu, MappingConfig(uuid_source="key")),
        CommercetoolsClient(emu.ct_settings()) as ct,
    ):
        store = DeadLetterStore(ct)
        # When a customer backfill runs
        handle = await start_backfill(client, task_queue, BackfillInput(target="customers"))
        result = await handle.result()

        # Then the rejected customer is a dead letter: entity, record, run, path, reason
        assert (result.stats.sent, result.stats.rejected) == (2, 1)
        [letter] = await store.list(path="backfill")
        assert (letter.entity, letter.record_id, letter.run, letter.attempts) == (
            "customer",
            bad_id,
            handle.id,
            1,
        )
        assert letter.reasons == [NO_IDENTIFIER]
        assert letter.redrive == {"resource": "customers", "id": bad_id, "skip_hook": True}
        assert "not-an-email" not in letter.model_dump_json()  # nothing personal kept
        # and the run is found by its search attributes, with rejections as its outcome
        await listed(
            client,
            'CtEntity="customers" AND CtRunKind="backfill" AND CtOutcome="rejections"',
            handle.result_run_id,
        )

        # When the customer gets a valid email in commercetools, and `dlq retry` is run
        customer = emu.ct("GET", f"customers/{bad_id}")
        emu.ct(
            "POST",
            f"customers/{bad_id}",
            {
                "version": customer["version"],
                "actions": [{"action": "changeEmail", "email": "fixed@example.com"}],
            },
        )
        emu.use_in_this_process(monkeypatch, client, task_queue)
        args = _parser().parse_args(["dlq", "retry", letter.key, "--json"])
        status = await args.handler(args)
        report = printed_json(capsys.readouterr().out)

        # Then the customer is delivered and its letter is gone
        assert status == 0
        assert report["sync"]["delivered"] == [letter.key]
        emails = [u["identifiers"].get("email") for u in emu.insider_users()]
        assert "fixed@example.com" in emails
        assert len(emails) == 3
        assert await store.list() == []
        # and the re-drive is a workflow found by the customer's id
        redrive = client.get_workflow_handle(report["workflow_id"])
        await listed(
            client,
            f'CtRunKind="redrive" AND CtCustomerId="{bad_id}" AND CtOutcome="completed"',
            (await redrive.describe()).run_id,
        )


async def test_a_redrive_refused_again_keeps_the_letter_with_one_more_attempt(
    client: Client,
    task_queue: str,
    clean_emulators: Emulators,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = clean_emulators
    # Given a dead-lettered customer whose cause was not fixed
    bad_id = keyless_customer(emu, "still-not-an-email")
    async with (
        running_worker(client, task_queue, emu, MappingConfig(uuid_source="key")),
        CommercetoolsClient(emu.ct_settings()) as ct,
    ):
        store = DeadLetterStore(ct)
        handle = await start_backfill(client, task_queue, BackfillInput(target="customers"))
        await handle.result()
        [before] = await store.list()
        # When it is re-driven
        emu.use_in_this_process(monkeypatch, client, task_queue)
        args = _parser().parse_args(["dlq", "retry", "--all", "--path", "backfill", "--json"])
        status = await args.handler(args)
        report = printed_json(capsys.readouterr().out)
        # Then it stays, with one more attempt, the re-drive as its run, and exit status 1
        assert status == 1
        assert report["sync"]["refused"] == [before.key]
        [after] = await store.list()
        assert (after.key, after.record_id, after.attempts) == (before.key, bad_id, 2)
        assert after.run == report["workflow_id"]
        assert after.first_seen == before.first_seen
        assert after.reasons == [NO_IDENTIFIER]
    assert emu.insider_users() == []


async def test_letters_refused_again_keep_the_path_each_came_from(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    # Given two customers that still cannot be mapped, one a backfill letter, one a delta one
    paths = {
        keyless_customer(emu, "bad-one"): "backfill",
        keyless_customer(emu, "bad-two"): "delta",
    }
    async with (
        running_worker(client, task_queue, emu, MappingConfig(uuid_source="key")),
        CommercetoolsClient(emu.ct_settings()) as ct,
    ):
        store = DeadLetterStore(ct)
        for customer_id, path in paths.items():
            rejection = Rejection(record_id=customer_id, stage="mapping", reasons=["bad"])
            await store.put(
                sync_letters(
                    [rejection], resource="customers", run=f"{path}-x", skip_hook=True, path=path
                )
            )
        # When both are re-driven at once
        report = await retry(
            store,
            client,
            task_queue=task_queue,
            journey_task_queue=f"{task_queue}-journeys",
            shards=1,
            every=True,
        )
        # Then both are refused again, and each is still listed under its own path
        assert len(report.sync.refused) == 2
        after = await store.list()
    assert {letter.record_id: letter.path for letter in after} == paths
    assert {letter.attempts for letter in after} == {2}


async def test_a_delta_sync_dead_letters_what_it_rejects(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    async with (
        running_worker(client, task_queue, emu, MappingConfig(uuid_source="key")),
        CommercetoolsClient(emu.ct_settings()) as ct,
        running_delta(client, task_queue, "customers") as delta,
    ):
        # When a customer that cannot be mapped is created while the delta sync runs
        bad_id = keyless_customer(emu, "nope")
        # Then it becomes a delta letter naming the delta workflow
        [letter] = await letters_when(DeadLetterStore(ct), 1, path="delta")
        assert (letter.entity, letter.record_id, letter.run) == ("customer", bad_id, delta.id)
        # and the delta workflow shows it in its outcome
        await listed(
            client,
            'CtRunKind="delta" AND CtEntity="customers" AND CtOutcome="rejections"',
            delta.result_run_id,
            within=20,
        )


async def test_letters_are_written_per_rejected_record_with_pii_masked(
    clean_emulators: Emulators,
) -> None:
    calls: list[int] = []

    async def refusing_sender(records: list[dict[str, Any]]) -> SyncStats:
        calls.append(len(records))
        stats = SyncStats(processed=len(records), sent=len(records) - 1)
        stats.reject(
            Rejection(
                record_id=str(records[0]["id"]),
                stage="insider",
                reasons=["user has an invalid email: jane.doe@example.com"],
            )
        )
        return stats

    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        store = DeadLetterStore(ct)
        send = dead_lettering(
            refusing_sender,
            store,
            resource="orders",
            run="delta-orders",
            skip_hook=False,
            path="delta",
        )
        batch: list[dict[str, Any]] = [
            {"id": "o-1", "country": "DE", "store": {"key": "de-store"}},
            {"id": "o-2"},
        ]
        # When a batch with one refused record is sent, twice (a retried chunk)
        await send(batch)
        await send(batch)
        # Then there is one letter for it, with two attempts, its market, and no raw email
        [letter] = await store.list()
    assert calls == [2, 2]
    assert (letter.entity, letter.record_id, letter.path, letter.attempts) == (
        "order",
        "o-1",
        "delta",
        2,
    )
    assert letter.market == {"country": "DE", "store": "de-store"}
    assert "jane.doe@example.com" not in letter.model_dump_json()
    assert letter.reasons[0].startswith("insider: user has an invalid email: ")


async def test_a_clean_backfill_completes_with_its_attributes_and_progress_details(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    clean_emulators.seeder().customers(3)
    # Given the session's dev server: registering our attributes again adds nothing
    assert await ensure_search_attributes(client, client.namespace) == []
    async with running_worker(client, task_queue, clean_emulators):
        # When a customer backfill runs to its end
        handle = await start_backfill(client, task_queue, BackfillInput(target="customers"))
        await handle.result()
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    # Then its current details show the progress, and it is found as completed
    assert "**customers backfill completed**" in metadata.current_details
    assert "customers completed: processed 3 of 3, sent 3" in metadata.current_details
    await listed(
        client,
        'CtEntity="customers" AND CtRunKind="backfill" AND CtOutcome="completed"',
        handle.result_run_id,
    )
    described = await handle.describe()
    keys = {key.name for key in RUN_ATTRIBUTES}
    assert {pair.key.name for pair in described.typed_search_attributes} >= keys - {"CtCustomerId"}


async def test_a_catalog_item_without_a_price_is_dead_lettered_and_redriven_once_priced(
    client: Client,
    worker: Workers,
    clean_emulators: Emulators,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = clean_emulators
    # Given a product whose first variant has no GB price
    product_id, master = product_without_a_gb_price(emu)
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        store = DeadLetterStore(ct)
        # When the full catalog sync runs
        handle = await start_backfill(client, worker.task_queue, BackfillInput(target="catalog"))
        result = await handle.result()
        # Then that variant's GB item is a catalog letter naming its product
        assert result.stats.rejected == 1
        [letter] = await store.list(path="catalog")
        locale = letter.market["locale"]
        assert (letter.entity, letter.record_id, letter.run) == (
            "catalog-item",
            f"{master['sku']}@{locale}",
            handle.id,
        )
        assert letter.reasons == [f"mapping: no price for {locale}"]
        assert letter.redrive == {"resource": "products", "id": product_id, "skip_hook": True}
        assert (master["sku"], locale) not in insider_catalog(emu)

        # When the variant gets its GB price, and the letter is retried
        product = emu.ct("GET", f"products/{product_id}")
        gbp = {"value": {"currencyCode": "GBP", "centAmount": 1_500}, "country": "GB"}
        emu.ct(
            "POST",
            f"products/{product_id}",
            {
                "version": product["version"],
                "actions": [
                    {"action": "addPrice", "sku": master["sku"], "price": gbp, "staged": False}
                ],
            },
        )
        emu.use_in_this_process(monkeypatch, client, worker.task_queue)
        args = _parser().parse_args(["dlq", "retry", "--all", "--entity", "catalog-item", "--json"])
        status = await args.handler(args)
        report = printed_json(capsys.readouterr().out)

        # Then Insider's catalog has the item, and the letter is gone
        assert status == 0
        assert report["sync"]["delivered"] == [letter.key]
        assert (master["sku"], locale) in insider_catalog(emu)
        assert await store.list() == []


async def test_a_scheduled_catalog_sync_files_its_letters_under_catalog(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given a product whose first variant has no GB price
    product_id, master = product_without_a_gb_price(clean_emulators)
    # When a catalog reconciliation runs under the id its Temporal Schedule gives it: the
    # schedule's id (an operator-chosen name), then the time it was due
    schedule_run = "ct-insider-weekly-items-2026-12-03T01:00:00Z"
    result = await client.execute_workflow(
        BackfillWorkflow.run,
        BackfillInput(target="catalog", catalog_mode="changes"),
        id=schedule_run,
        task_queue=worker.task_queue,
    )
    # Then the item it could not send is a catalog letter, found by `dlq list --path catalog`
    assert result.stats.rejected == 1
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        [letter] = await DeadLetterStore(ct).list(path="catalog")
    assert (letter.entity, letter.run) == ("catalog-item", schedule_run)
    assert letter.record_id.startswith(f"{master['sku']}@")
    assert letter.redrive == {"resource": "products", "id": product_id, "skip_hook": True}


def product_without_a_gb_price(emu: Emulators) -> tuple[str, dict[str, Any]]:
    """(its id, its master variant draft): the variant's GB item cannot be mapped."""
    seeder = emu.seeder()
    seeder.ensure("product-type", "product-types", product_type_draft())
    seeder.bulk("category", category_drafts())
    [draft] = product_drafts(1)
    master: dict[str, Any] = draft["masterVariant"]
    master["prices"] = [p for p in master["prices"] if p["country"] != "GB"]
    [product_id] = seeder.bulk("product", [draft])
    return product_id, master


async def test_a_realtime_catalog_refresh_dead_letters_what_it_rejects(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    emu = clean_emulators
    product_id, master = product_without_a_gb_price(emu)
    # When a product change reaches its catalog-change workflow
    change = CatalogChange(dedupe_key="m-1", product_id=product_id)
    handle = await client.start_workflow(
        CatalogChangeWorkflow.run,
        CatalogChangeInput(key=change.workflow_key(), idle_seconds=0.5, pending=[change]),
        id=catalog_change_workflow_id(worker.journey_task_queue, change.workflow_key()),
        task_queue=worker.journey_task_queue,
    )
    stats = await handle.result()
    # Then the item it could not send is a realtime letter naming the workflow
    assert stats.rejected == 1
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        [letter] = await DeadLetterStore(ct).list(path="realtime")
    assert (letter.entity, letter.run) == ("catalog-item", handle.id)
    assert letter.record_id.startswith(f"{master['sku']}@")
    # and the run is found among catalog changes with rejections
    await listed(
        client,
        'CtRunKind="catalog-change" AND CtEntity="catalog" AND CtOutcome="rejections"',
        handle.result_run_id,
    )


def insider_catalog(emu: Emulators) -> set[tuple[str, str]]:
    body = httpx.get(f"{emu.insider_url}/_emulator/catalog", timeout=60).json()
    return {(item["item_id"], item["locale"]) for item in body["items"]}


async def test_retry_without_a_worker_says_so_instead_of_hanging(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given a sync letter and no worker polling the sync task queue
    async with CommercetoolsClient(clean_emulators.ct_settings()) as ct:
        store = DeadLetterStore(ct)
        rejection = Rejection(record_id="c-1", stage="mapping", reasons=["bad"])
        await store.put(
            sync_letters(
                [rejection], resource="customers", run="delta-x", skip_hook=False, path="delta"
            )
        )
        # When it is retried with a short wait
        with pytest.raises(RedriveStillRunning) as raised:
            await retry(
                store,
                client,
                task_queue=task_queue,
                journey_task_queue=f"{task_queue}-journeys",
                shards=1,
                every=True,
                wait_seconds=0.5,
            )
        # Then the operator is told which workflow waits on which task queue; the letter stays
        assert task_queue in str(raised.value)
        [letter] = await store.list()
        assert letter.attempts == 1
    await client.get_workflow_handle(raised.value.workflow_id).terminate("test over")
