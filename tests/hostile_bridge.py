"""The bridge app in-process, for attacks on its HTTP surface: the real app (routes, token
check, body reading, validation, routing, admission, dead letters), with Temporal replaced by
a dispatcher that records what it was handed and commercetools by an httpx MockTransport
that answers like the API (a token; 404 for reads; custom objects stored)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from bridge.app import create_app
from bridge.carts import CartSignal
from bridge.commit import ShardPart
from bridge.dispatch import Dispatcher
from bridge.reading import BODY_READ_TIMEOUT_SECONDS
from bridge.routing import NotificationRouter
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import CommercetoolsSettings
from ct_insider.deadletters import DeadLetterStore
from workflows.catalog_changes import CatalogChange

TOKEN = "hostile-bridge-token-0123456789"
CT_SECRET = "ct-client-secret-never-shown"


@dataclass
class _Layout:
    latest: None = None


@dataclass
class _Journeys:
    commits: int = 0
    updates: int = 0
    fallbacks: int = 0
    layout: _Layout = field(default_factory=_Layout)


class RecordingDispatcher:
    """Stands in for Temporal: what the bridge would have stored, counted."""

    def __init__(self) -> None:
        self.journeys = _Journeys()
        self.carts = None
        self.dispatched: list[ShardPart | CatalogChange | CartSignal] = []

    async def dispatch(self, signals: Sequence[ShardPart | CatalogChange | CartSignal]) -> int:
        self.dispatched.extend(signals)
        self.journeys.commits += 1
        return 1

    async def ready(self) -> bool:
        return True


def _commercetools(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/oauth/token"):
        return httpx.Response(
            200, json={"access_token": "t", "expires_in": 3600, "token_type": "Bearer"}
        )
    if request.method == "POST" and request.url.path.endswith("/custom-objects"):
        body = json.loads(request.content)
        return httpx.Response(201, json={**body, "id": "co", "version": 1})
    return httpx.Response(
        404, json={"statusCode": 404, "errors": [{"code": "ResourceNotFound", "message": "no"}]}
    )


@dataclass
class HostileBridge:
    app: FastAPI
    dispatcher: RecordingDispatcher
    ct: CommercetoolsClient


def hostile_bridge(body_timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS) -> HostileBridge:
    settings = CommercetoolsSettings(
        project_key="hostile",
        client_id="client",
        client_secret=SecretStr(CT_SECRET),
        auth_url="https://auth.ct.test",
        api_url="https://api.ct.test",
    )
    ct = CommercetoolsClient(
        settings, http=httpx.AsyncClient(transport=httpx.MockTransport(_commercetools))
    )
    dispatcher = RecordingDispatcher()
    app = create_app(
        SecretStr(TOKEN),
        NotificationRouter(ct),
        cast(Dispatcher, dispatcher),
        DeadLetterStore(ct),
        body_timeout_seconds=body_timeout_seconds,
    )
    return HostileBridge(app, dispatcher, ct)


def asgi_client(bridge: HostileBridge) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bridge.app),
        base_url="http://bridge.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


def product_view(event_id: str = "e-1", **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "product_view",
        "occurred_at": "2026-11-26T18:30:00Z",
        "identity": {"anonymous_id": "a-1"},
        "sku": "SKU-1",
        **fields,
    }
