"""Serving the bridge on 127.0.0.1 for a test, and building deliveries in every envelope."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
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
from temporalio.service import RPCError, RPCStatusCode

from bridge.app import create_app
from bridge.carts import CartSignaller
from bridge.commit import ShardCommitter
from bridge.dispatch import Dispatcher
from bridge.layout import LayoutReader
from bridge.routing import NotificationRouter
from bridge.sns import SubscriptionConfirmer
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import CartSettings, CommercetoolsSettings, TimerCapSettings
from ct_insider.deadletters import DeadLetter, DeadLetterStore
from ct_insider.timers.cap import OpenTimerCap
from ct_insider.timers.kinds import TimerAdmission
from tests.conftest import PROJECT_KEY, Emulators, eventually
from workflows.journey_shard import (
    JourneyShardWorkflow,
    ShardSettings,
    ShardStats,
    shard_workflow_id,
)

TOKEN = "bridge-test-token-0123456789"
SHARDS = 4


@dataclass(frozen=True)
class Bridge:
    url: str

    async def post(self, path: str, body: Any, *, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(f"{self.url}{path}", json=body, headers=headers)

    async def post_raw(
        self, path: str, content: bytes, content_type: str = "application/json"
    ) -> httpx.Response:
        """A body as it is, under its own content type (empty: none)."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if content_type:
            headers["Content-Type"] = content_type
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(f"{self.url}{path}", content=content, headers=headers)

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
    ct_settings: CommercetoolsSettings | None = None,
    layout: LayoutReader | None = None,
    carts: CartSettings | None = None,
    timer_admission: TimerAdmission | None = None,
    sns_confirmer: SubscriptionConfirmer | None = None,
    **shard_settings: Any,
) -> AsyncIterator[Bridge]:
    """The bridge app served by uvicorn; `ct_settings` replace the emulator's (e.g. fewer
    scopes), `shard_settings` override ShardSettings; `carts` with cart events on (and
    `timer_admission`, else every cart admitted)."""
    # Listening before uvicorn starts: requests wait in the backlog until it serves them, and
    # no other process can take the port in between.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        async with CommercetoolsClient(ct_settings or emulators.ct_settings()) as ct:
            committer = ShardCommitter(
                client,
                journey_task_queue,
                shards=shards,
                window_seconds=0.05,
                settings=ShardSettings.model_validate(
                    {"continue_notice_seconds": 0, **shard_settings}
                ),
                layout=layout,
            )
            cart_signaller = (
                CartSignaller(
                    client,
                    journey_task_queue,
                    carts,
                    timer_admission=timer_admission
                    or OpenTimerCap.for_client(client, TimerCapSettings()),
                )
                if carts is not None and carts.events_enabled
                else None
            )
            app = create_app(
                SecretStr(TOKEN),
                NotificationRouter(ct, carts=cart_signaller is not None),
                Dispatcher(client, journey_task_queue, committer, carts=cart_signaller),
                DeadLetterStore(ct),
                sns_confirmer=sns_confirmer,
            )
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
            task = asyncio.create_task(server.serve(sockets=[listener]))
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


def change(
    resource_type: str, resource_id: str, kind: str, version: int, at: datetime | None = None
) -> dict[str, Any]:
    """A commercetools change notification (ResourceCreated/Updated/Deleted), Platform
    format, without the resource (payload not included)."""
    when = (at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "notificationType": kind,
        "projectKey": PROJECT_KEY,
        "resource": {"typeId": resource_type, "id": resource_id},
        "version": version,
        **({"oldVersion": version - 1} if kind == "ResourceUpdated" else {}),
        "modifiedAt": when,
        "payloadNotIncluded": {"reason": "payload too large", "payloadType": resource_type},
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


async def stored_letters(emu: Emulators) -> list[DeadLetter]:
    """The dead letters the connector's store (commercetools) holds now."""
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        return await DeadLetterStore(ct).list()


def seconds_ago(seconds: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds)


async def settled_shards(
    client: Client, journey_task_queue: str, shards: int, received: int, *, distinct: bool = False
) -> dict[int, ShardStats]:
    """The statistics of each shard started, once they took in `received` signals in all and
    nothing more can come out of them: no signal pending, no workflow task or activity under
    way (so a duplicate that was going to be sent has been sent). `distinct`: count the
    signals taken in less the duplicates dropped (archived ones included): where a shard was
    slow to accept a window (a worker killed, Insider failing inside a delivery), the bridge
    stored it as a signal too, and the shard may take both."""

    def taken(stats: ShardStats) -> int:
        return stats.received - (stats.duplicates if distinct else 0)

    async def observe() -> tuple[list[str], dict[int, ShardStats]]:
        busy: list[str] = []
        found: dict[int, ShardStats] = {}
        for shard in range(shards):
            handle = client.get_workflow_handle_for(
                JourneyShardWorkflow.run, shard_workflow_id(journey_task_queue, shard)
            )
            try:
                described = (await handle.describe()).raw_description
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    continue  # no signal ever reached this shard
                raise
            pending = await handle.query(JourneyShardWorkflow.pending)
            if described.HasField("pending_workflow_task"):
                busy.append(f"shard {shard}: a workflow task")
            if described.pending_activities:
                busy.append(f"shard {shard}: {len(described.pending_activities)} activities")
            if pending:
                busy.append(f"shard {shard}: {pending} signals pending")
            found[shard] = await handle.query(JourneyShardWorkflow.stats)
        return busy, found

    _, stats = await eventually(
        observe,
        60,
        until=lambda seen: not seen[0] and sum(taken(s) for s in seen[1].values()) == received,
        what=f"the shards to take in {received} signals and go quiet",
    )
    return dict(stats)
