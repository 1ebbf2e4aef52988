"""`--wait` never hangs silently: search attributes are registered where Temporal lets us,
commands refuse (exit 2) where it does not, and a wait on a workflow whose tasks keep
failing ends with the failure's message.

Each test uses a namespace of its own on the session's dev server: a fresh namespace has
none of our search attributes (the session's `default` got them on the command line). The
refusal is Temporal's own: a namespace of the dev server's SQL visibility holds at most 10
Keyword attributes, so one filled with 10 others refuses ours (INVALID_ARGUMENT) as Temporal
Cloud refuses any (PERMISSION_DENIED); tests/unit/test_search_attribute_refusal.py covers
that status's wording.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from ct_insider.search_attributes import ALL
from starters.backfill import start_backfill
from starters.watch import WorkflowStuck, watched
from tests.conftest import Emulators, eventually, run_cli, running_worker, worker_process
from workers.main import register_search_attributes
from workflows.backfill import BackfillInput
from workflows.delta import DeltaSyncWorkflow

pytestmark = pytest.mark.integration

OURS = {key.name for key in ALL}


@pytest_asyncio.fixture
async def namespace_client(client: Client) -> AsyncIterator[Client]:
    """A client of a namespace of its own (none of our search attributes registered)."""
    name = f"ct-test-{uuid.uuid4().hex[:10]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86_400)
        )
    )

    async def known() -> bool:
        try:
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=name)
            )
        except RPCError:
            return False
        return True

    await eventually(known, what=f"namespace {name} registered")
    yield Client(client.service_client, namespace=name, data_converter=client.data_converter)


async def _custom_attributes(client: Client) -> set[str]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return set(listed.custom_attributes)


async def _fill_keywords(client: Client) -> None:
    """Ten Keyword attributes of others: the dev server then refuses one more."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                f"OtherKeyword{i:02d}": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                for i in range(10)
            },
        )
    )


async def _workflow_count(client: Client) -> int:
    return len([w async for w in client.list_workflows()])


def _env(emu: Emulators, client: Client, task_queue: str) -> dict[str, str]:
    target = client.service_client.config.target_host
    return {**emu.environment(target, task_queue), "TEMPORAL_NAMESPACE": client.namespace}


async def test_the_worker_registers_missing_search_attributes_and_the_backfill_completes(
    namespace_client: Client, task_queue: str, clean_emulators: Emulators, tmp_path: Path
) -> None:
    # Given a namespace without our search attributes, and customers
    client = namespace_client
    assert not OURS & await _custom_attributes(client)
    clean_emulators.seeder().customers(4)
    env = _env(clean_emulators, client, task_queue)
    # When a `ct-insider worker` process starts on it
    with worker_process(
        clean_emulators, client, task_queue, tmp_path, "worker", TEMPORAL_NAMESPACE=client.namespace
    ):
        # Then it registered them before any command ran
        assert await _custom_attributes(client) >= OURS
        # And a backfill followed to its end completes
        done = await asyncio.to_thread(run_cli, env, "backfill", "customers", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["progress"]["phases"][0]["stats"]["sent"] == 4


async def test_where_registration_is_refused_commands_and_doctor_say_what_to_run(
    namespace_client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given a namespace whose server refuses our search attributes, and a worker on it
    client = namespace_client
    await _fill_keywords(client)
    clean_emulators.seeder().customers(2)
    env = _env(clean_emulators, client, task_queue)
    # (the worker's own attempt at its start is refused too, and it runs on)
    assert await register_search_attributes(client) == []
    async with running_worker(client, task_queue, clean_emulators):
        # When a backfill is started and waited for, and doctor runs
        waited = await asyncio.to_thread(run_cli, env, "backfill", "customers", "--wait")
        delta = await asyncio.to_thread(
            run_cli, env, "sync", "delta", "customers", "--since", "2020-01-01T00:00:00Z"
        )
        doctor = await asyncio.to_thread(run_cli, env, "doctor", "--json")

    # Then the backfill exits 2 at once, naming the command to run and Temporal's refusal
    assert waited.returncode == 2, waited.stdout + waited.stderr
    assert "`ct-insider setup temporal`" in waited.stderr
    assert "CtRunKind" in waited.stderr
    assert "cannot have more than 10 search attribute of type Keyword" in waited.stderr
    # ... having started nothing (it did not wait on a workflow that could never run)
    assert await _workflow_count(client) == 0
    # And so does a delta
    assert delta.returncode == 2, delta.stderr
    assert "`ct-insider setup temporal`" in delta.stderr
    assert await _workflow_count(client) == 0
    # And doctor fails the check with exit 2, saying what to run
    assert doctor.returncode == 2, doctor.stdout + doctor.stderr
    verdicts = {(v["system"], v["check"]): v for v in json.loads(doctor.stdout)["verdicts"]}
    check = verdicts[("Temporal", "search attributes")]
    assert check["status"] == "FAIL"
    assert "`ct-insider setup temporal`" in check["detail"]
    assert "CtEntity=Keyword" in check["detail"]


async def test_a_wait_on_a_workflow_failing_on_search_attributes_reports_the_failure(
    namespace_client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given a namespace refusing our search attributes, and a worker on it (in-process:
    # it does not register them) running a backfill started without the commands' check
    client = namespace_client
    await _fill_keywords(client)
    clean_emulators.seeder().customers(2)
    async with running_worker(client, task_queue, clean_emulators):
        handle = await start_backfill(client, task_queue, BackfillInput(target="customers"))
        # When the backfill is waited on, Then the wait ends naming the failure and the fix
        with pytest.raises(WorkflowStuck) as stuck:
            await watched(client, handle.id, handle.result(), stuck_after=1.0, poll=0.5)
        await handle.terminate("test over")
    assert "no mapping defined for search attribute Ct" in stuck.value.failure
    assert "`ct-insider setup temporal`" in str(stuck.value)


async def test_backfill_wait_on_a_worker_without_the_workflow_exits_2_with_the_failure(
    client: Client, task_queue: str, clean_emulators: Emulators
) -> None:
    # Given the only worker on the task queue lacks the backfill workflow (an old build)
    clean_emulators.seeder().customers(2)
    env = clean_emulators.environment(client.service_client.config.target_host, task_queue)
    async with Worker(client, task_queue=task_queue, workflows=[DeltaSyncWorkflow]):
        # When a backfill is started and waited for
        waited = await asyncio.to_thread(run_cli, env, "backfill", "customers", "--wait")
    # Then the wait ends with exit 2 and the failed task's message, not silence
    assert waited.returncode == 2, waited.stdout + waited.stderr
    assert "is stuck: its workflow task failed" in waited.stderr
    assert "BackfillWorkflow" in waited.stderr
    [workflow] = [w async for w in client.list_workflows(f"TaskQueue = '{task_queue}'")]
    await client.get_workflow_handle(workflow.id).terminate("test over")
