"""Serving the bridge on 127.0.0.1 for a test, and building deliveries in every envelope."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from pydantic import SecretStr
from temporalio.client import Client

from bridge.app import create_app
from bridge.commit import ShardCommitter
from bridge.dispatch import Dispatcher
from bridge.layout import LayoutReader
from bridge.routing import NotificationRouter
from ct_insider.commercetools.client import CommercetoolsClient
from emulators.process import free_port
from tests.conftest import PROJECT_KEY, Emulators
from workflows.journey_shard import ShardSettings

TOKEN = "bridge-test-token-0123456789"
SHARDS = 4


@dataclass(frozen=True)
class Bridge:
    url: str

    async def post(self, path: str, body: Any, *, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(f"{self.url}{path}", json=body, headers=headers)

    async def stats(self) -> dict[str, int]:
        async with httpx.AsyncClient(timeout=30) as http:
            body: dict[str, int] = (await http.get(f"{self.url}/stats")).json()
            return body


@asynccontextmanager
async def serving_bridge(
    client: Client,
    journey_task_queue: str,
    emulators: Emulators,
    *,
    shards: int = SHARDS,
    layout: LayoutReader | None = None,
    **shard_settings: Any,
) -> AsyncIterator[Bridge]:
    """The bridge app served by uvicorn; `shard_settings` override ShardSettings."""
    port = free_port()
    async with CommercetoolsClient(emulators.ct_settings()) as ct:
        committer = ShardCommitter(
            client,
            journey_task_queue,
            shards=shards,
            window_seconds=0.05,
            settings=ShardSettings.model_validate(shard_settings),
            layout=layout,
        )
        app = create_app(
            SecretStr(TOKEN),
            NotificationRouter(ct),
            Dispatcher(client, journey_task_queue, committer),
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        task = asyncio.create_task(server.serve())
        for _ in range(500):  # uvicorn has no "started" event to await
            if server.started:
                break
            await asyncio.sleep(0.02)
        try:
            yield Bridge(f"http://127.0.0.1:{port}")
        finally:
            server.should_exit = True
            await task


def message(
    resource_type: str,
    resource_id: str,
    message_type: str,
    *,
    sequence: int = 1,
    version: int = 1,
    at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A commercetools Message in the Platform format."""
    when = (at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "notificationType": "Message",
        "projectKey": PROJECT_KEY,
        "id": str(uuid.uuid4()),
        "version": 1,
        "sequenceNumber": sequence,
        "resource": {"typeId": resource_type, "id": resource_id},
        "resourceVersion": version,
        "type": message_type,
        "createdAt": when,
        "lastModifiedAt": when,
        **fields,
    }


def as_cloudevent(platform: dict[str, Any]) -> dict[str, Any]:
    resource = platform["resource"]["typeId"]
    return {
        "specversion": "1.0",
        "id": platform["id"],
        "type": f"com.commercetools.{resource}.message.{platform['type']}",
        "source": f"/{PROJECT_KEY}/{resource}s",
        "subject": platform["resource"]["id"],
        "time": platform["createdAt"],
        "sequence": str(platform["sequenceNumber"]),
        "sequencetype": "Integer",
        "dataref": f"/{PROJECT_KEY}/messages/{platform['id']}",
        "data": platform,
    }


def as_pubsub(platform: dict[str, Any]) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(platform).encode()).decode()
    return {
        "message": {"data": data, "messageId": "1234567890", "attributes": {}},
        "subscription": "projects/demo/subscriptions/ct-insider",
    }


def as_eventbridge(platform: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": platform["type"],
        "source": f"aws.partner/commercetools.com/{PROJECT_KEY}/ct-insider",
        "account": "123456789012",
        "time": platform["createdAt"],
        "region": "eu-central-1",
        "resources": [],
        "detail": platform,
    }


ENVELOPES = {
    "platform": lambda platform: platform,
    "cloudevents": as_cloudevent,
    "pubsub": as_pubsub,
    "eventbridge": as_eventbridge,
}


def storefront_event(
    event_type: str, identity: dict[str, str], at: datetime, **fields: Any
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "occurred_at": at.isoformat(),
        "identity": identity,
        **fields,
    }


def seconds_ago(seconds: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)
