"""The SQS consumer (bridge/sqs.py) against an SQS server on 127.0.0.1 (moto's server mode):
commercetools messages put on the queue reach the real worker and the Insider emulator,
poison is dead-lettered and deleted, what is not taken stays on the queue."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
from temporalio.client import Client

from bridge.commit import ShardCommitter
from bridge.delivery import Deliveries
from bridge.dispatch import Dispatcher
from bridge.letters import LetterBox
from bridge.routing import NotificationRouter
from bridge.sqs import SqsConsumer, SqsQueue
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.config import SqsSettings
from ct_insider.deadletters import DeadLetterStore
from emulators.process import ManagedProcess, ct_insider_command, free_port
from tests.aws_helpers import REGION, aws_endpoint, aws_env
from tests.bridge_helpers import TOKEN, as_cloudevent, message
from tests.conftest import Emulators, eventually
from workers.main import Workers

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["aws_endpoint", "aws_env"]  # fixtures

pytestmark = pytest.mark.integration


@dataclass
class Topic:
    arn: str
    sns: SNSClient

    def publish(self, Message: str) -> None:
        self.sns.publish(TopicArn=self.arn, Message=Message)


@dataclass
class Queue:
    url: str
    sqs: SQSClient

    def put(self, body: Any) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.sqs.send_message(QueueUrl=self.url, MessageBody=text)

    def subscribe_to_topic(self, endpoint: str) -> Topic:
        """A new SNS topic that delivers to this queue (as SNS envelopes: no raw delivery)."""
        sns: SNSClient = boto3.session.Session(region_name=REGION).client(
            "sns", endpoint_url=endpoint
        )
        arn = sns.create_topic(Name=f"ct-{uuid.uuid4().hex}")["TopicArn"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
        return Topic(arn, sns)

    def held(self) -> int:
        """Messages on the queue, visible or in flight."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )


@pytest.fixture
def queue(aws_endpoint: str, aws_env: None) -> Queue:
    sqs: SQSClient = boto3.session.Session(region_name=REGION).client(
        "sqs", endpoint_url=aws_endpoint
    )
    url = sqs.create_queue(QueueName=f"ct-{uuid.uuid4().hex}")["QueueUrl"]
    return Queue(url, sqs)


@dataclass
class Consuming:
    consumer: SqsConsumer
    committer: ShardCommitter
    counters: Counter[str]
    letters: DeadLetterStore


@asynccontextmanager
async def consuming(
    client: Client,
    journey_task_queue: str,
    emu: Emulators,
    queue: Queue,
    aws_endpoint: str,
    *,
    shards: int = 4,
) -> AsyncIterator[Consuming]:
    """The consumer wired like `ct-insider consume sqs` (bridge/server.py), polling briefly."""
    settings = SqsSettings(
        queue_url=queue.url,
        region=REGION,
        endpoint_url=aws_endpoint,
        wait_seconds=1,
        retry_min_seconds=0.2,
        retry_max_seconds=1,
    )
    counters: Counter[str] = Counter()
    async with CommercetoolsClient(emu.ct_settings()) as ct:
        committer = ShardCommitter(client, journey_task_queue, shards=shards, window_seconds=0.05)
        letters = DeadLetterStore(ct)
        deliveries = Deliveries(
            NotificationRouter(ct),
            Dispatcher(client, journey_task_queue, committer),
            LetterBox(letters, counters),
            counters,
        )
        sqs_queue = SqsQueue(settings)
        consumer = SqsConsumer(sqs_queue, deliveries, settings)
        task = asyncio.create_task(consumer.run())
        try:
            yield Consuming(consumer, committer, counters, letters)
        finally:
            consumer.stop()
            await task
            sqs_queue.close()


def profile_of(emu: Emulators, customer_id: str) -> dict[str, Any] | None:
    return next(
        (u for u in emu.insider_users() if u["identifiers"].get("uuid") == customer_id), None
    )


async def test_messages_reach_insider_and_poison_is_dead_lettered_then_deleted(
    client: Client,
    worker: Workers,
    clean_emulators: Emulators,
    queue: Queue,
    aws_endpoint: str,
) -> None:
    emu = clean_emulators
    customer_id, email, sku = emu.shopper()
    customer = emu.ct("GET", f"customers/{customer_id}")
    order = emu.place_order(sku, quantity=2, customerId=customer_id, customerEmail=email)
    # Given commercetools' messages on the queue: a customer created (CloudEvents format), its
    # order created (Platform format) published to an SNS topic the queue is subscribed to
    # (SNS envelopes), the subscription's test notification, and two poison messages: not
    # JSON, and JSON that is no commercetools delivery
    queue.put(as_cloudevent(message("customer", customer_id, "CustomerCreated", customer=customer)))
    topic = queue.subscribe_to_topic(aws_endpoint)
    topic.publish(json.dumps(message("order", order["id"], "OrderCreated", order=order)))
    queue.put(
        {
            "notificationType": "ResourceCreated",
            "projectKey": "test-project",
            "resource": {"typeId": "subscription", "id": str(uuid.uuid4())},
            "version": 1,
            "modifiedAt": "2026-12-01T00:00:00.000Z",
        }
    )
    queue.put("this is not JSON")
    queue.put({"hello": "world"})
    # And one well-formed but unroutable: an order that names nobody (no journey owns it)
    nobodys = emu.place_order(sku)
    queue.put(message("order", nobodys["id"], "OrderCreated", order=nobodys))
    assert queue.held() == 6

    # When the consumer runs
    async with consuming(client, worker.journey_task_queue, emu, queue, aws_endpoint) as run:
        # Then the customer's profile has its sign-up and its purchase
        profile = await eventually(
            lambda: profile_of(emu, customer_id),
            until=lambda p: p is not None and len(p["events"]) >= 2,
            what="the customer's sign-up and purchase in Insider",
        )
        # And every message is deleted: the taken ones once stored, the poison once
        # dead-lettered
        await eventually(queue.held, until=lambda held: held == 0, what="an empty queue")
        counters = dict(run.counters)
        letters = await run.letters.list()
    assert sorted(e["event_name"] for e in profile["events"]) == [
        "purchase",
        "sign_up_confirmation",
    ]
    assert profile["identifiers"]["email"] == email
    assert (counters["sqs_taken"], counters["sqs_poison"]) == (3, 3)
    assert counters["dead_lettered:unreadable"] == 2
    assert counters["dead_lettered:names_nobody"] == 1
    assert counters["test_notification"] == 1
    # And each unreadable message has a letter naming it and saying why (never its body)
    unreadable = [letter for letter in letters if letter.entity == "notification"]
    reasons = [letter.reasons[0] for letter in unreadable]
    assert len(unreadable) == 2
    assert all(letter.path == "realtime" for letter in unreadable)
    assert all(letter.record_id.startswith("sqs:") for letter in unreadable)
    assert any("malformed JSON" in reason for reason in reasons)
    assert any("notificationType is missing" in reason for reason in reasons)
    assert not any("world" in reason for reason in reasons)
    # And the unroutable order has the letter a webhook delivery of it would get (re-drivable)
    [order_letter] = [letter for letter in letters if letter.entity != "notification"]
    assert (order_letter.entity, order_letter.record_id) == ("order", nobodys["id"])
    assert "names no customer, visitor or email" in order_letter.reasons[0]


async def test_a_message_not_committed_stays_on_the_queue_and_is_taken_later(
    client: Client,
    worker: Workers,
    clean_emulators: Emulators,
    queue: Queue,
    aws_endpoint: str,
) -> None:
    emu = clean_emulators
    [(first_id, _), (second_id, _)] = emu.seeder().customers(2)
    first, second = (emu.ct("GET", f"customers/{i}") for i in (first_id, second_id))
    # Given a consumer on one journey shard, whose first message is stored
    async with consuming(
        client, worker.journey_task_queue, emu, queue, aws_endpoint, shards=1
    ) as run:
        queue.put(message("customer", first_id, "CustomerCreated", customer=first))
        await eventually(lambda: run.counters["sqs_taken"] == 1, what="the first message taken")
        # And the shard then counts as behind: its history, read as the committer reads it
        # (every 2 s, when signals arrive), is over the backlog bound
        await run.committer._lane(0)._describe()
        run.committer.backlog_bytes = 1
        assert run.committer.journey_backlog()[0] > 1

        # When a message arrives for the backlogged shard
        queue.put(message("customer", second_id, "CustomerCreated", customer=second))
        # Then it is not taken, and it stays on the queue (not deleted)
        await eventually(lambda: run.counters["sqs_not_taken"] >= 1, what="the refusal")
        assert queue.held() == 1
        assert profile_of(emu, second_id) is None

        # When the shard has caught up
        run.committer.backlog_bytes = 8_000_000
        # Then the message is received again, taken and deleted, and reaches Insider
        await eventually(lambda: profile_of(emu, second_id), what="the second profile")
        await eventually(queue.held, until=lambda held: held == 0, what="an empty queue")
        assert run.counters["sqs_taken"] == 2
        assert run.counters["unavailable"] >= 1
    assert profile_of(emu, first_id) is not None


async def test_the_consume_sqs_command_takes_messages_serves_stats_and_stops_on_sigterm(
    client: Client,
    worker: Workers,
    clean_emulators: Emulators,
    queue: Queue,
    aws_endpoint: str,
    tmp_path: Path,
) -> None:
    emu = clean_emulators
    [(customer_id, _)] = emu.seeder().customers(1)
    customer = emu.ct("GET", f"customers/{customer_id}")
    # Given a CustomerCreated message on the queue
    queue.put(message("customer", customer_id, "CustomerCreated", customer=customer))
    # When `ct-insider consume sqs` runs as operators run it (AWS credentials inherited from
    # the environment: the standard chain)
    port = free_port()
    target = client.service_client.config.target_host
    process = ManagedProcess(
        "sqs consumer",
        ct_insider_command("consume", "sqs"),
        health_url=f"http://127.0.0.1:{port}/healthz",
        env={
            **emu.environment(target, worker.task_queue),
            "BRIDGE_TOKEN": TOKEN,
            "BRIDGE_PORT": str(port),
            "SQS_QUEUE_URL": queue.url,
            "SQS_REGION": REGION,
            "SQS_ENDPOINT_URL": aws_endpoint,
            "SQS_WAIT_SECONDS": "1",
        },
        log_path=tmp_path / "consume-sqs.log",
    )
    await asyncio.to_thread(process.start)
    try:
        # Then the customer reaches Insider, the message is deleted, and /stats counts it
        await eventually(lambda: profile_of(emu, customer_id), what="the profile in Insider")
        await eventually(queue.held, until=lambda held: held == 0, what="an empty queue")
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"http://127.0.0.1:{port}/stats")).json()
        assert stats["sqs_taken"] == 1
        assert stats["accepted:CustomerCreated"] == 1
    finally:
        # And on SIGTERM it stops by itself (not killed after the stop timeout)
        await asyncio.to_thread(process.stop)
    assert process.process is not None
    assert process.process.returncode != -signal.SIGKILL
    assert "Traceback" not in (tmp_path / "consume-sqs.log").read_text()
