"""Insider client against respx-mocked HTTP: partial failures, 429, 5xx, auth errors."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import respx
from pydantic import SecretStr

from ct_insider.config import InsiderSettings
from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderConfigurationError, InsiderUnavailable
from ct_insider.insider.models import Attributes, Identifiers, User
from ct_insider.retry import Backoff

UCD = "https://ucd.test"
SETTINGS = InsiderSettings(
    partner_name="Shop",
    api_key=SecretStr("k"),
    catalog_api_key=SecretStr("c"),
    unification_url=UCD,
    catalog_url="https://catalog.test",
)
FAST = Backoff(attempts=3, base_seconds=0.001, max_seconds=0.5)


def mockable_http() -> httpx.AsyncClient:
    """respx intercepts httpx's default transport; the clients' own lean transport is tested
    against a real server (test_transport.py) and by every integration test."""
    return httpx.AsyncClient()


def users(n: int) -> list[User]:
    return [
        User(identifiers=Identifiers(uuid=f"u{i}"), attributes=Attributes(name="A"))
        for i in range(n)
    ]


@respx.mock
async def test_partial_failure_maps_errors_back_to_caller_indices() -> None:
    bodies = [
        {
            "data": {
                "successful": {"count": 999},
                "fail": {
                    "count": 1,
                    "errors": {
                        "users.998.identifiers.*.regexp(x)": ["user has an invalid phone number: 1"]
                    },
                },
            }
        },
        {
            "data": {
                "successful": {"count": 4},
                "fail": {
                    "count": 1,
                    "errors": {"users.2.events.0.event_params.*.required": ["a", "b"]},
                },
            }
        },
    ]
    route = respx.post(f"{UCD}/api/user/v1/upsert").mock(
        side_effect=[httpx.Response(200, json=b) for b in bodies]
    )
    async with InsiderClient(SETTINGS, backoff=FAST, http=mockable_http()) as insider:
        result = await insider.upsert_users(users(1_005), skip_hook=True)
    assert result.successful == 1_003
    assert [(f.index, f.reasons) for f in result.failures] == [
        (998, ["user has an invalid phone number: 1"]),
        (1_002, ["a", "b"]),
    ]
    request = route.calls[0].request
    assert request.headers["X-PARTNER-NAME"] == "shop"
    assert request.headers["X-REQUEST-TOKEN"] == "k"
    sent = json.loads(request.content)
    assert sent["skip_hook"] is True
    assert len(sent["users"]) == 1_000


@respx.mock
async def test_429_honours_retry_after_then_succeeds() -> None:
    route = respx.post(f"{UCD}/api/user/v1/upsert").mock(
        side_effect=[
            httpx.Response(
                429, json={"error": "rejected: too many requests"}, headers={"Retry-After": "0"}
            ),
            httpx.Response(500, json={"success": False}),
            httpx.Response(200, json={"data": {"successful": {"count": 1}, "fail": {}}}),
        ]
    )
    async with InsiderClient(SETTINGS, backoff=FAST, http=mockable_http()) as insider:
        result = await insider.upsert_users(users(1))
    assert (route.call_count, result.successful) == (3, 1)


@respx.mock
async def test_403_is_a_configuration_error_and_not_retried() -> None:
    route = respx.post(f"{UCD}/api/user/v1/upsert").mock(
        return_value=httpx.Response(403, json={"message": "no"})
    )
    async with InsiderClient(SETTINGS, backoff=FAST, http=mockable_http()) as insider:
        with pytest.raises(InsiderConfigurationError):
            await insider.upsert_users(users(1))
    assert route.call_count == 1


@respx.mock
async def test_persistent_5xx_is_retryable_unavailable() -> None:
    respx.post(f"{UCD}/api/user/v1/upsert").mock(
        return_value=httpx.Response(502, text="bad gateway")
    )
    async with InsiderClient(SETTINGS, backoff=FAST, http=mockable_http()) as insider:
        with pytest.raises(InsiderUnavailable) as caught:
            await insider.upsert_users(users(1))
    assert caught.value.retryable


@respx.mock
async def test_oversized_single_user_is_reported_not_sent() -> None:
    route = respx.post(f"{UCD}/api/user/v1/upsert").mock(
        return_value=httpx.Response(200, json={"data": {"successful": {"count": 1}, "fail": {}}})
    )
    huge = User(identifiers=Identifiers(uuid="big"), attributes=Attributes(name="x" * 5_000_001))
    async with InsiderClient(SETTINGS, backoff=FAST, http=mockable_http()) as insider:
        result = await insider.upsert_users([huge, *users(1)])
    assert [f.index for f in result.failures] == [0]
    assert len(json.loads(route.calls[0].request.content)["users"]) == 1


async def test_an_unanswered_upsert_gives_up_after_the_configured_timeout_as_maybe_stored() -> None:
    # Given an Insider that takes requests and never answers, and a 0.2 s request timeout
    received = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        received.set()
        await reader.read()  # until the client hangs up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = SETTINGS.model_copy(
        update={"unification_url": f"http://127.0.0.1:{port}", "request_timeout_seconds": 0.2}
    )
    try:
        # When an upsert carrying events is sent (not repeatable)
        async with InsiderClient(settings, backoff=FAST) as client:
            with pytest.raises(InsiderUnavailable) as raised:
                await client.upsert_users(users(1), repeatable=False)
    finally:
        server.close()
    # Then it is reported unanswered - possibly stored, for the caller to settle - not retried
    assert received.is_set()
    assert raised.value.maybe_stored
    assert "ReadTimeout" in str(raised.value)
