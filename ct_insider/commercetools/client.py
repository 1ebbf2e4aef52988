"""commercetools HTTP client: token handling, retries and cursor paging.

Paging always walks `sort=id asc` with `where=id > "<last id>"` and `withTotal=false`:
offset paging stops at 10,000 and totals cost the API a count on every page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ct_insider.commercetools.auth import TokenProvider
from ct_insider.commercetools.errors import CommercetoolsError, CommercetoolsNotFound
from ct_insider.config import CommercetoolsSettings
from ct_insider.http import HttpApiClient
from ct_insider.retry import Backoff, RetryableStatus, parse_retry_after, with_backoff
from ct_insider.transport import api_http_client

MAX_PAGE_SIZE = 500
# Values per `in (...)` predicate: keeps query strings well below commercetools' URL limit.
MAX_IN_VALUES = 100
_RETRYABLE_STATUS = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Page:
    """One page of raw resources, plus the cursor to resume after it."""

    results: list[dict[str, Any]]
    last_id: str | None

    @property
    def is_last(self) -> bool:
        return self.last_id is None


def cursor_predicate(where: str | None, after_id: str | None) -> str | None:
    """Combine a caller's predicate with the id cursor."""
    clauses = []
    if where:
        clauses.append(f"({where})")
    if after_id is not None:
        clauses.append(f"id > {json.dumps(after_id)}")
    return " and ".join(clauses) or None


class CommercetoolsClient(HttpApiClient):
    def __init__(
        self,
        settings: CommercetoolsSettings,
        *,
        http: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(
            http
            or api_http_client(
                httpx.Timeout(30.0, connect=10.0),
                max_connections=settings.max_concurrency * 2,
                system="commercetools",
            ),
            owns_http=http is None,
        )
        self._api = settings.api_url.rstrip("/") + "/" + settings.project_key
        self._tokens = TokenProvider(
            self._http,
            settings.auth_url,
            settings.client_id,
            settings.client_secret,
            settings.effective_scopes,
        )
        self._backoff = backoff or Backoff()
        self._in_flight = asyncio.Semaphore(settings.max_concurrency)

    async def granted_scopes(self) -> frozenset[str]:
        """The scopes commercetools granted this client's token (fetching one if needed)."""
        await self._tokens.token()
        return self._tokens.granted_scopes

    async def get_json(self, path: str, params: httpx.QueryParams | None = None) -> Any:
        """GET {api}/{project}/{path}; retries transient failures, raises CommercetoolsError."""
        return await self._request("GET", path, params=params)

    async def post_json(self, path: str, body: Any) -> Any:
        """POST a JSON body (create, update actions, custom objects)."""
        return await self._request("POST", path, body=body)

    async def delete(self, path: str, params: httpx.QueryParams | None = None) -> None:
        """DELETE; a resource that is already gone counts as deleted."""
        try:
            await self._request("DELETE", path, params=params)
        except CommercetoolsNotFound:
            return

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: httpx.QueryParams | None = None,
        body: Any = None,
    ) -> Any:
        url = f"{self._api}/{path.lstrip('/')}"

        async def attempt() -> Any:
            async with self._in_flight:
                response = await self._authorized(method, url, params, body)
            if response.status_code in _RETRYABLE_STATUS:
                raise RetryableStatus(response, parse_retry_after(response))
            if response.status_code >= 400:
                raise CommercetoolsError.from_response(response)
            return response.json() if response.content else None

        try:
            return await with_backoff(attempt, self._backoff)
        except RetryableStatus as exc:
            raise CommercetoolsError.from_response(exc.response) from None

    async def _authorized(
        self, method: str, url: str, params: httpx.QueryParams | None, body: Any
    ) -> httpx.Response:
        for renewed in (False, True):
            token = await self._tokens.token()
            response = await self._http.request(
                method, url, params=params, json=body, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code != 401 or renewed:
                return response
            # Renew once: the token may have been revoked or expired early.
            await self._tokens.invalidate(token)
        raise AssertionError("unreachable: the second pass returns")

    async def get_by_id(
        self, resource: str, resource_id: str, expand: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """One resource by id, or None when it does not exist (e.g. deleted since)."""
        try:
            result: dict[str, Any] = await self.get_json(
                f"{resource}/{resource_id}", httpx.QueryParams([("expand", e) for e in expand])
            )
        except CommercetoolsNotFound:
            return None
        return result

    async def page(
        self,
        resource: str,
        *,
        where: str | None = None,
        after_id: str | None = None,
        expand: Sequence[str] = (),
        page_size: int = MAX_PAGE_SIZE,
    ) -> Page:
        """Read one page after `after_id` in id order."""
        limit = max(1, min(page_size, MAX_PAGE_SIZE))
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("sort", "id asc"),
            ("limit", str(limit)),
            ("withTotal", "false"),
        ]
        predicate = cursor_predicate(where, after_id)
        if predicate:
            params.append(("where", predicate))
        params.extend(("expand", e) for e in expand)
        body = await self.get_json(resource, httpx.QueryParams(params))
        results: list[dict[str, Any]] = body.get("results", [])
        last_id = str(results[-1]["id"]) if len(results) == limit else None
        return Page(results=results, last_id=last_id)

    async def pages(
        self,
        resource: str,
        *,
        where: str | None = None,
        after_id: str | None = None,
        expand: Sequence[str] = (),
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[Page]:
        """Stream every matching resource page by page, in id order, each exactly once."""
        cursor = after_id
        while True:
            page = await self.page(
                resource,
                where=where,
                after_id=cursor,
                expand=expand,
                page_size=page_size,
            )
            if page.results:
                yield page
            if page.is_last:
                return
            cursor = page.last_id

    async def find_in(
        self,
        resource: str,
        values: Sequence[str],
        predicate: Callable[[str], str],
        expand: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Every resource matching `predicate(<quoted values>)`, asked for in small groups.

        e.g. `find_in("customers", ids, lambda quoted: f"id in ({quoted})")`.
        """
        unique = list(dict.fromkeys(values))
        found: list[dict[str, Any]] = []
        for start in range(0, len(unique), MAX_IN_VALUES):
            quoted = ",".join(json.dumps(v) for v in unique[start : start + MAX_IN_VALUES])
            async for page in self.pages(resource, where=predicate(quoted), expand=expand):
                found.extend(page.results)
        return found
