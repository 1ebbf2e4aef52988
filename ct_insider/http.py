"""What both API clients share: an httpx.AsyncClient they may own, closed with them."""

from __future__ import annotations

from types import TracebackType
from typing import Self

import httpx


class HttpApiClient:
    def __init__(self, http: httpx.AsyncClient, *, owns_http: bool) -> None:
        # A caller-supplied client (tests, shared pools) stays open; one we made, we close.
        self._http = http
        self._owns_http = owns_http

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
