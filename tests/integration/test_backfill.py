"""BackfillWorkflow on a real worker, the dev server and both emulators."""

from __future__ import annotations

import httpx
import pytest
from temporalio.client import Client

from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.window import Window
from starters.backfill import start_backfill
from tests.conftest import Emulators, eventually, running_worker
from workers.main import Workers
from workflows.backfill import BackfillInput, BackfillWorkflow

pytestmark = pytest.mark.integration


async def test_backfill_sends_all_1200_customers_each_once(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given 1,200 customers in commercetools
    seeded = clean_emulators.seeder().customers(1_200)

    # When a customer backfill runs to completion
    handle = await start_backfill(
        client, worker.task_queue, BackfillInput(target="customers", chunk_seconds=0.5)
    )
    result = await handle.result()

    # Then Insider holds each of them exactly once, with consent and identity mapped
    assert result.status == "completed"
    assert (result.stats.processed, result.stats.sent, result.stats.rejected) == (1_200, 1_200, 0)
    users = clean_emulators.insider_users()
    uuids = [u["identifiers"]["uuid"] for u in users]
    assert len(uuids) == 1_200
    assert sorted(uuids) == sorted(customer_id for customer_id, _ in seeded)
    by_uuid = {u["identifiers"]["uuid"]: u for u in users}
    first_id, first_email = seeded[0]
    assert by_uuid[first_id]["identifiers"]["email"] == first_email
    assert by_uuid[first_id]["attributes"]["gdpr_optin"] is True


async def test_progress_is_queryable_and_a_second_start_attaches(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    clean_emulators.seeder().customers(600)
    # Slow Insider down so the run is still going when we look at it.
    httpx.post(
        f"{clean_emulators.insider_url}/_emulator/faults", json={"latency_ms": 400}
    ).raise_for_status()
    params = BackfillInput(target="customers", batch_size=100, chunk_seconds=0.2)

    first = await start_backfill(client, worker.task_queue, params)
    second = await start_backfill(client, worker.task_queue, params)
    assert second.result_run_id == first.result_run_id

    progress = await eventually(
        lambda: first.query(BackfillWorkflow.progress),
        until=lambda progress: progress is not None and progress.stats.processed > 0,
        what="progress with records processed",
    )
    assert progress.status == "running"
    assert 0 < progress.stats.processed < 600
    assert progress.phases[0].cursor is not None
    assert progress.phases[0].total == 600

    final = await first.result()
    assert final.stats.sent == 600


async def test_continue_as_new_carries_cursor_and_counts(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    clean_emulators.seeder().customers(450)
    # One batch per chunk and one chunk per run: 100 records per workflow run.
    handle = await start_backfill(
        client,
        worker.task_queue,
        BackfillInput(
            target="customers",
            batch_size=100,
            chunk_seconds=0.001,
            max_chunks_per_run=1,
        ),
    )
    result = await handle.result()
    assert (result.stats.processed, result.stats.sent, result.phases[0].chunks) == (450, 450, 5)
    assert len(clean_emulators.insider_users()) == 450
    # The run we started handed over to successors.
    description = await client.get_workflow_handle(
        handle.id, run_id=handle.first_execution_run_id
    ).describe()
    assert description.status is not None
    assert description.status.name == "CONTINUED_AS_NEW"


async def test_records_without_a_usable_identifier_are_reported_not_sent(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given uuid taken from the customer key, and customers with neither a key nor a valid email
    seeded = clean_emulators.seeder().customers(3)
    clean_emulators.seeder().bulk(
        "customer",
        [
            {"email": "not-an-email", "password": "x", "key": None},
            {"email": "keyed@example.com", "password": "x", "key": "cust-key-1"},
        ],
    )
    mapping = MappingConfig(uuid_source="key")
    async with running_worker(client, task_queue, clean_emulators, mapping):
        handle = await start_backfill(
            client,
            task_queue,
            BackfillInput(target="customers", window=Window(since=None, until=None)),
        )
        result = await handle.result()

    # Then the one without an identifier is in the run report with its reason, the rest are sent
    assert (result.stats.processed, result.stats.sent, result.stats.rejected) == (5, 4, 1)
    [rejection] = result.stats.rejections
    assert rejection.stage == "mapping"
    assert rejection.reasons == ["no usable identifier (uuid, email or phone)"]
    assert rejection.record_id not in {customer_id for customer_id, _ in seeded}
    identifiers = [u["identifiers"] for u in clean_emulators.insider_users()]
    assert {"uuid": "cust-key-1", "email": "keyed@example.com"} in identifiers
    assert len(identifiers) == 4


async def test_invalid_phone_and_birthday_are_dropped_while_the_rest_syncs(
    client: Client, worker: Workers, clean_emulators: Emulators
) -> None:
    # Given a customer whose phone and birthday Insider would refuse
    clean_emulators.seeder().bulk(
        "customer",
        [
            {
                "email": "Odd.Values@Example.com",
                "password": "x",
                "firstName": "Odd",
                "dateOfBirth": "1850-01-01",
                "addresses": [{"country": "US", "city": "Portland", "mobile": "12345"}],
                "defaultShippingAddress": 0,
            }
        ],
    )

    # When customers are backfilled
    result = await (
        await start_backfill(client, worker.task_queue, BackfillInput(target="customers"))
    ).result()

    # Then the customer is sent without those two values, and the warnings are counted
    assert (result.stats.sent, result.stats.rejected, result.stats.warnings) == (1, 0, 2)
    [user] = clean_emulators.insider_users()
    assert user["identifiers"]["email"] == "odd.values@example.com"
    assert user["attributes"]["name"] == "Odd"
    assert user["attributes"]["city"] == "Portland"
    assert "phone_number" not in user["attributes"]
    assert "birthday" not in user["attributes"]
