"""commercetools client against respx-mocked HTTP: tokens, retries, typed errors, paging params."""

from __future__ import annotations

import httpx
import pytest
import respx
from pydantic import SecretStr

from ct_insider.commercetools.client import CommercetoolsClient, cursor_predicate
from ct_insider.commercetools.errors import CommercetoolsAuthError, CommercetoolsUnavailable
from ct_insider.config import CommercetoolsSettings
from ct_insider.retry import Backoff

API = "https://api.test"
SETTINGS = CommercetoolsSettings(
    project_key="shop",
    client_id="id",
    client_secret=SecretStr("s"),
    auth_url="https://auth.test",
    api_url=API,
)
FAST = Backoff(attempts=3, base_seconds=0.001, max_seconds=0.002)


def mockable_http() -> httpx.AsyncClient:
    """respx intercepts httpx's default transport; the clients' own lean transport is tested
    against a real server (test_transport.py) and by every integration test."""
    return httpx.AsyncClient()


def token_route(mock: respx.MockRouter, *tokens: str) -> respx.Route:
    return mock.post("https://auth.test/oauth/token").mock(
        side_effect=[
            httpx.Response(
                200, json={"access_token": t, "expires_in": 172800, "token_type": "Bearer"}
            )
            for t in tokens
        ]
    )


@respx.mock
async def test_token_is_cached_and_renewed_once_on_401() -> None:
    tokens = token_route(respx.mock, "t1", "t2")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer t1" and len(seen) == 3:
            return httpx.Response(
                401, json={"statusCode": 401, "errors": [{"code": "invalid_token"}]}
            )
        return httpx.Response(200, json={"results": []})

    respx.get(f"{API}/shop/customers").mock(side_effect=answer)
    async with CommercetoolsClient(SETTINGS, backoff=FAST, http=mockable_http()) as ct:
        for _ in range(3):
            await ct.page("customers")
    assert tokens.call_count == 2
    assert seen == ["Bearer t1", "Bearer t1", "Bearer t1", "Bearer t2"]
    assert tokens.calls[0].request.headers["Authorization"].startswith("Basic ")


@respx.mock
async def test_503_is_retried_with_backoff_then_succeeds() -> None:
    token_route(respx.mock, "t1")
    route = respx.get(f"{API}/shop/customers").mock(
        side_effect=[
            httpx.Response(503, json={"statusCode": 503, "errors": [{"code": "OverCapacity"}]}),
            httpx.ConnectError("boom"),
            httpx.Response(200, json={"results": [{"id": "a"}]}),
        ]
    )
    async with CommercetoolsClient(SETTINGS, backoff=FAST, http=mockable_http()) as ct:
        page = await ct.page("customers")
    assert route.call_count == 3
    assert page.results == [{"id": "a"}]


@respx.mock
async def test_persistent_503_raises_retryable_typed_error() -> None:
    token_route(respx.mock, "t1")
    respx.get(f"{API}/shop/customers").mock(
        return_value=httpx.Response(
            503, json={"statusCode": 503, "message": "busy", "errors": [{"code": "OverCapacity"}]}
        )
    )
    async with CommercetoolsClient(SETTINGS, backoff=FAST, http=mockable_http()) as ct:
        with pytest.raises(CommercetoolsUnavailable) as caught:
            await ct.page("customers")
    assert caught.value.retryable
    assert caught.value.codes == ["OverCapacity"]


@respx.mock
async def test_429_raises_a_retryable_typed_error() -> None:
    token_route(respx.mock, "t1")
    respx.get(f"{API}/shop/orders").mock(
        return_value=httpx.Response(429, json={"statusCode": 429, "message": "slow down"})
    )
    async with CommercetoolsClient(SETTINGS, backoff=FAST, http=mockable_http()) as ct:
        # When commercetools answers 429 Too Many Requests
        with pytest.raises(CommercetoolsUnavailable) as caught:
            await ct.page("orders")
    # Then it is worth a later retry (the bridge answers 503, an activity is retried)
    assert caught.value.retryable
    assert caught.value.status_code == 429


@respx.mock
async def test_403_is_a_non_retryable_auth_error() -> None:
    token_route(respx.mock, "t1")
    respx.get(f"{API}/shop/orders").mock(
        return_value=httpx.Response(
            403,
            json={
                "statusCode": 403,
                "message": "scope",
                "errors": [{"code": "insufficient_scope"}],
            },
        )
    )
    async with CommercetoolsClient(SETTINGS, backoff=FAST, http=mockable_http()) as ct:
        with pytest.raises(CommercetoolsAuthError) as caught:
            await ct.page("orders")
    assert not caught.value.retryable
    assert caught.value.codes == ["insufficient_scope"]


@respx.mock
async def test_paging_sends_cursor_sort_limit_and_no_total() -> None:
    token_route(respx.mock, "t1")
    route = respx.get(f"{API}/shop/customers").mock(
        side_effect=[
            httpx.Response(200, json={"results": [{"id": "a"}, {"id": "b"}]}),
            httpx.Response(200, json={"results": [{"id": "c"}]}),
        ]
    )
    async with CommercetoolsClient(SETTINGS, backoff=FAST, http=mockable_http()) as ct:
        pages = [p async for p in ct.pages("customers", where='lastModifiedAt >= "x"', page_size=2)]
    assert [r["id"] for p in pages for r in p.results] == ["a", "b", "c"]
    first, second = (call.request.url.params for call in route.calls)
    assert (first["sort"], first["limit"], first["withTotal"]) == ("id asc", "2", "false")
    assert "offset" not in first
    assert first["where"] == '(lastModifiedAt >= "x")'
    assert second["where"] == '(lastModifiedAt >= "x") and id > "b"'


def test_cursor_predicate_escapes_the_id() -> None:
    assert cursor_predicate(None, 'a"b') == 'id > "a\\"b"'
    assert cursor_predicate(None, None) is None
