"""OAuth2 client-credentials token, cached and renewed before it expires."""

from __future__ import annotations

import asyncio
import time

import httpx
from pydantic import SecretStr

from ct_insider.commercetools.errors import CommercetoolsError

# The official SDK renews five minutes early; so do we.
RENEW_MARGIN_SECONDS = 300.0


class TokenProvider:
    def __init__(
        self,
        http: httpx.AsyncClient,
        auth_url: str,
        client_id: str,
        client_secret: SecretStr,
        scopes: str,
    ) -> None:
        self._http = http
        self._url = auth_url.rstrip("/") + "/oauth/token"
        self._client_id = client_id
        self._client_secret = client_secret
        self._scopes = scopes
        self._token: str | None = None
        self._expires_at = 0.0
        # What the token endpoint granted (its `scope` answer): setup checks it.
        self.granted_scopes: frozenset[str] = frozenset()
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def invalidate(self, stale: str) -> None:
        """Forget `stale` after a 401 so the next call fetches a fresh token (once)."""
        async with self._lock:
            if self._token == stale:
                self._token = None

    async def _fetch(self) -> None:
        response = await self._http.post(
            self._url,
            data={"grant_type": "client_credentials", "scope": self._scopes},
            auth=(self._client_id, self._client_secret.get_secret_value()),
        )
        if response.status_code != 200:
            raise CommercetoolsError.from_response(response)
        body = response.json()
        lifetime = float(body.get("expires_in", 3600))
        self._token = str(body["access_token"])
        self.granted_scopes = frozenset(str(body.get("scope") or "").split())
        self._expires_at = time.monotonic() + max(lifetime - RENEW_MARGIN_SECONDS, lifetime / 2)
