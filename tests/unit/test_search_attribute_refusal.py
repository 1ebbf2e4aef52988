"""Where Temporal refuses to register our search attributes (Temporal Cloud answers
PERMISSION_DENIED), commands refuse with what to run. The dev server cannot be made to answer
PERMISSION_DENIED (it has no authorizer), so the refusal is injected at the boundary we call:
the operator service's AddSearchAttributes. The real refusal of a dev server (a namespace
with no Keyword slot left) is tests/integration/test_no_silent_wait.py."""

from __future__ import annotations

from typing import cast

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
    ListSearchAttributesResponse,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ct_insider.search_attributes import ALL, SearchAttributesRefused, ensure_search_attributes
from starters.output import UsageError
from starters.watch import require_search_attributes


class CloudOperatorService:
    """Lists what the namespace has; refuses to add, as Temporal Cloud does."""

    def __init__(self, known: dict[str, IndexedValueType.ValueType]) -> None:
        self.known = known
        self.adds: list[AddSearchAttributesRequest] = []

    async def list_search_attributes(
        self, request: ListSearchAttributesRequest
    ) -> ListSearchAttributesResponse:
        return ListSearchAttributesResponse(custom_attributes=self.known)

    async def add_search_attributes(self, request: AddSearchAttributesRequest) -> None:
        self.adds.append(request)
        raise RPCError("Request unauthorized.", RPCStatusCode.PERMISSION_DENIED, b"")


class FakeClient:
    def __init__(self, operator: CloudOperatorService) -> None:
        self.namespace = "shop.a1b2c"
        self.operator_service = operator


async def test_a_refused_registration_names_the_command_and_the_cloud_types() -> None:
    # Given a Cloud namespace with one of our attributes, refusing to add the others
    operator = CloudOperatorService({"CtEntity": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD})
    client = cast(Client, FakeClient(operator))

    # When a command checks before starting a workflow
    with pytest.raises(UsageError) as refused:
        await require_search_attributes(client)

    # Then it tried to add only the missing ones, and says what to run and what to add
    [added] = operator.adds
    assert set(added.search_attributes) == {key.name for key in ALL} - {"CtEntity"}
    message = str(refused.value)
    assert "`ct-insider setup temporal`" in message
    assert "PERMISSION_DENIED: Request unauthorized." in message
    assert "CtRunKind=Keyword" in message
    assert "CtTimerDueAt=Datetime" in message
    assert "CtEntity=" not in message


async def test_nothing_to_add_asks_nothing_of_a_refusing_server() -> None:
    # Given a Cloud namespace that has every attribute already (added in the Cloud UI)
    operator = CloudOperatorService(
        {key.name: IndexedValueType.ValueType(key.indexed_value_type.value) for key in ALL}
    )
    client = cast(Client, FakeClient(operator))

    # When a command or a worker checks, Then nothing is added and nothing refused
    assert await ensure_search_attributes(client, client.namespace) == []
    assert await require_search_attributes(client) == []
    assert operator.adds == []


async def test_the_refusal_keeps_what_is_missing_for_the_worker_log() -> None:
    operator = CloudOperatorService({})
    with pytest.raises(SearchAttributesRefused) as refused:
        await ensure_search_attributes(cast(Client, FakeClient(operator)), "shop.a1b2c")
    assert refused.value.missing == [key.name for key in ALL]
    assert refused.value.reason == "PERMISSION_DENIED: Request unauthorized."
