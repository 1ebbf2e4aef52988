"""Amazon SNS HTTPS subscriptions to the bridge (bridge/sns.py): a topic on moto's server
delivers commercetools messages to /webhooks/sns, which reach the real worker and the
Insider emulator; the subscription confirmation visits only an SNS endpoint."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client

from bridge.sns import PATH, SubscriptionConfirmer
from tests.aws_helpers import REGION, aws_endpoint, aws_env
from tests.bridge_helpers import TOKEN, as_cloudevent, message, serving_bridge, stored_letters
from tests.conftest import Emulators, eventually
from workers.main import Workers

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

__all__ = ["aws_endpoint", "aws_env"]  # fixtures

pytestmark = pytest.mark.integration


@asynccontextmanager
async def sns_confirm_endpoint() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A stand-in for SNS's confirmation endpoint (SNS itself is not reachable from here):
    its URL, and the query of each confirmation it received."""
    confirmations: list[dict[str, str]] = []

    async def confirm(request: Request) -> Response:
        confirmations.append(dict(request.query_params))
        return Response("<ConfirmSubscriptionResponse/>", media_type="text/xml")

    app = Starlette(routes=[Route("/", confirm)])
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            yield f"http://127.0.0.1:{port}", confirmations
        finally:
            server.should_exit = True
            await task


def profile_of(emu: Emulators, customer_id: str) -> dict[str, Any] | None:
    return next(
        (u for u in emu.insider_users() if u["identifiers"].get("uuid") == customer_id), None
    )


async def test_sns_confirms_its_subscription_and_delivers_to_insider(
    client: Client,
    worker: Workers,
    clean_emulators: Emulators,
    aws_endpoint: str,
    aws_env: None,
) -> None:
    emu = clean_emulators
    [(first_id, _), (second_id, _)] = emu.seeder().customers(2)
    first, second = (emu.ct("GET", f"customers/{i}") for i in (first_id, second_id))
    sns: SNSClient = boto3.session.Session(region_name=REGION).client(
        "sns", endpoint_url=aws_endpoint
    )
    topic = sns.create_topic(Name=f"ct-{uuid.uuid4().hex}")["TopicArn"]
    async with (
        sns_confirm_endpoint() as (confirm_url, confirmations),
        serving_bridge(
            client,
            worker.journey_task_queue,
            emu,
            # Here the stand-in on 127.0.0.1 is SNS; in production only sns.<region>.amazonaws.com
            sns_confirmer=SubscriptionConfirmer(re.compile(r"127\.0\.0\.1"), scheme="http"),
        ) as bridge,
        httpx.AsyncClient(base_url=bridge.url, timeout=30) as http,
    ):
        url = f"{PATH}?token={TOKEN}"  # how an SNS HTTPS subscription authenticates
        confirmation = {
            "Type": "SubscriptionConfirmation",
            "MessageId": str(uuid.uuid4()),
            "Token": "t-1",
            "TopicArn": topic,
            "Message": "You have chosen to subscribe to the topic ...",
            "SubscribeURL": f"{confirm_url}/?Action=ConfirmSubscription&TopicArn={topic}&Token=t-1",
        }
        headers = {"Content-Type": "text/plain; charset=UTF-8"}  # as SNS sends it
        # Given SNS asks for a confirmation without the token: refused, nothing visited
        assert (await http.post(PATH, json=confirmation)).status_code == 401
        # And one whose SubscribeURL is no SNS endpoint: refused, nothing visited
        elsewhere = {**confirmation, "SubscribeURL": "http://169.254.169.254/latest/meta-data/"}
        refused = await http.post(url, content=json.dumps(elsewhere), headers=headers)
        assert refused.status_code == 422
        assert "not an SNS endpoint" in refused.json()["error"]
        assert confirmations == []
        # When SNS asks for the confirmation
        confirmed = await http.post(url, content=json.dumps(confirmation), headers=headers)
        # Then the bridge visited the SubscribeURL once
        assert confirmed.status_code == 200, confirmed.text
        assert confirmations == [
            {"Action": "ConfirmSubscription", "TopicArn": topic, "Token": "t-1"}
        ]

        # When the topic (moto's) delivers commercetools messages to the bridge over HTTP
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=f"{bridge.url}{url}")
        for body in (
            message("customer", first_id, "CustomerCreated", customer=first),
            as_cloudevent(message("customer", second_id, "CustomerCreated", customer=second)),
        ):
            # (moto posts to the bridge while publishing: off this event loop, which serves it)
            await asyncio.to_thread(sns.publish, TopicArn=topic, Message=json.dumps(body))
        # Then both customers reach Insider with their sign-up
        for customer_id in (first_id, second_id):
            profile = await eventually(lambda: profile_of(emu, customer_id))  # noqa: B023
            assert [e["event_name"] for e in profile["events"]] == ["sign_up_confirmation"]
        # And a notification that is no commercetools delivery is dead-lettered, naming the
        # SNS message (SNS does not retry a 4xx: a refusal would leave no trace)
        other = {
            "Type": "Notification",
            "MessageId": "m-other",
            "TopicArn": topic,
            "Message": '{"hello": "world"}',
        }
        invalid = await http.post(url, content=json.dumps(other), headers=headers)
        assert (invalid.status_code, invalid.json()["status"]) == (202, "dead-lettered")
        [letter] = [
            letter for letter in await stored_letters(emu) if letter.record_id == "sns:m-other"
        ]
        assert "notificationType is missing" in letter.reasons[0]
        assert "hello" not in letter.reasons[0]
        stats = await bridge.stats()
    assert stats["sns_confirmed"] == 1
    assert stats["sns_unreadable"] == 1
    assert stats["accepted:CustomerCreated"] == 2
