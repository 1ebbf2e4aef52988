"""Bearer-token check for the bridge's POST routes, as a plain ASGI middleware.

Starlette's `@app.middleware("http")` wraps every request in a task group and a streaming
response, which showed up in the bridge's CPU profile at hundreds of events per second
(bench/realtime.py). A pure ASGI check adds nothing to an authenticated request.
"""

from __future__ import annotations

import hmac
from collections import Counter
from urllib.parse import parse_qs

from pydantic import SecretStr
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PROTECTED_PREFIXES = ("/webhooks/", "/events")


def presented_token(scope: Scope) -> str:
    """`Authorization: Bearer <token>`, else `?token=<token>` (push subscriptions that
    cannot set headers)."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            header = value.decode("latin-1")
            if header[:7].lower() == "bearer " and header[7:]:
                return header[7:]
    query: bytes = scope.get("query_string", b"")
    if b"token=" in query:
        return parse_qs(query.decode("latin-1")).get("token", [""])[0]
    return ""


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp, token: SecretStr, counters: Counter[str]) -> None:
        self._app = app
        self._expected = token.get_secret_value().encode()
        self._counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Checked before anything reads the body: an unauthenticated sender learns nothing else.
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIXES):
            presented = presented_token(scope).encode()
            if not hmac.compare_digest(presented, self._expected):
                self._counters["unauthorized"] += 1
                response = JSONResponse(
                    {"error": "missing or wrong bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
