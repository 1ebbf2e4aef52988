"""What the SQS consumer and the Event Grid route read out of their carriers' envelopes, and
the SQS consumer's backoff bounds (bridge/sqs.py, bridge/eventgrid.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import httpx
import pytest
from fastapi import FastAPI

from bridge.delivery import Deliveries, Taken
from bridge.eventgrid import (
    CONCURRENT_EVENTS,
    PATH,
    VALIDATION_EVENT,
    eventgrid_notification,
    eventgrid_routes,
    validation_code,
)
from bridge.letters import Refusal
from bridge.reading import RequestRefused
from bridge.sqs import (
    MAX_FAILED_RECEIVES,
    MAX_VISIBILITY_SECONDS,
    ReceivedMessage,
    SqsConsumer,
    SqsQueue,
    retry_delay,
    sqs_notification,
    visibility_delay,
)
from ct_insider.config import SqsSettings
from ct_insider.journeys.envelopes import EnvelopeError, Notification
from starters.cli import main
from starters.output import ExitCode
from tests.bridge_helpers import as_cloudevent, message

SUBSCRIPTION_TEST = {
    "notificationType": "ResourceCreated",
    "projectKey": "p",
    "resource": {"typeId": "subscription", "id": "s-1"},
    "version": 1,
    "modifiedAt": "2026-12-01T00:00:00.000Z",
}


def sns_envelope(body: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ct",
            "Message": body,
        }
    )


def test_an_sqs_body_in_every_format_gives_the_same_notification() -> None:
    # Given one commercetools message, as the Platform and the CloudEvents format, each also
    # inside an SNS envelope (a queue subscribed to a topic without raw delivery)
    platform = message("customer", "c-1", "CustomerCreated", customer={"email": "a@b.c"})
    bodies = [json.dumps(platform), json.dumps(as_cloudevent(platform))]
    bodies += [sns_envelope(body) for body in bodies]
    # When each is read
    read = [sqs_notification(body) for body in bodies]
    # Then each is the same notification
    assert {(n.id, n.type, n.resource_id) for n in read if n is not None} == {
        (platform["id"], "CustomerCreated", "c-1")
    }
    assert len([n for n in read if n is not None]) == 4
    # And the subscription's test notification reads as None (acknowledged), wrapped or not
    assert sqs_notification(json.dumps(SUBSCRIPTION_TEST)) is None
    assert sqs_notification(sns_envelope(json.dumps(SUBSCRIPTION_TEST))) is None


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not json", "malformed JSON"),
        ("[" * 100_000, "malformed JSON"),
        ("\udcff", "malformed JSON"),
        ('"a string"', "must be a JSON object"),
        ('{"hello": "world"}', "notificationType is missing"),
        (sns_envelope("not json"), "malformed JSON"),
        ('{"notificationType": "Message", "id": "m-1"}', "invalid Message notification"),
        (
            json.dumps(
                {
                    "Type": "SubscriptionConfirmation",
                    "TopicArn": "arn:aws:sns:eu-west-1:1:t",
                    "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Confirm",
                }
            ),
            "SNS SubscriptionConfirmation: confirm the subscription",
        ),
    ],
)
def test_an_sqs_body_that_is_no_delivery_says_why(body: str, says: str) -> None:
    # When a body that is no commercetools delivery is read, Then the error says what is wrong
    with pytest.raises(EnvelopeError, match=says):
        sqs_notification(body)


def test_the_backoff_doubles_per_receive_within_its_bounds() -> None:
    # Given the defaults (1 s, at most 60 s)
    settings = SqsSettings(queue_url="https://sqs.example/q")
    # Then a message is received again after 1, 2, 4, ... seconds, never more than 60
    assert [visibility_delay(n, settings) for n in (1, 2, 3, 7, 8, 10_000)] == [1, 2, 4, 60, 60, 60]
    # And a fraction of a second becomes a whole second (SQS's unit), the pause stays exact
    short = SqsSettings(queue_url="q", retry_min_seconds=0.2, retry_max_seconds=1)
    assert (visibility_delay(1, short), retry_delay(1, short)) == (1, 0.2)
    # And the longest wait allowed is SQS's own maximum visibility timeout
    longest = SqsSettings(queue_url="q", retry_min_seconds=900, retry_max_seconds=43_200)
    assert visibility_delay(10_000, longest) == MAX_VISIBILITY_SECONDS


def test_sqs_settings_refuse_what_sqs_would() -> None:
    with pytest.raises(ValueError, match="wait_seconds"):
        SqsSettings(queue_url="q", wait_seconds=21)
    with pytest.raises(ValueError, match="batch_size"):
        SqsSettings(queue_url="q", batch_size=11)
    with pytest.raises(ValueError, match="SQS_RETRY_MIN_SECONDS is over"):
        SqsSettings(queue_url="q", retry_min_seconds=120, retry_max_seconds=60)


def test_an_eventgrid_event_in_either_schema_gives_the_notification() -> None:
    platform = message("order", "o-1", "OrderCreated")
    gridded = {"id": "e-1", "eventType": "OrderCreated", "data": platform, "dataVersion": "1"}
    gridded_cloudevent = {**gridded, "data": as_cloudevent(platform)}
    for event in (gridded, gridded_cloudevent, as_cloudevent(platform)):
        notification = eventgrid_notification(event)
        assert notification is not None
        assert (notification.id, notification.resource_id) == (platform["id"], "o-1")
    refused: list[tuple[object, str]] = [
        ("text", "must be a JSON object"),
        ({"id": "e-1", "subject": "x"}, "neither an Event Grid event"),
        ({"eventType": "X", "data": {"a": 1}}, "notificationType is missing"),
    ]
    for bad, says in refused:
        with pytest.raises(EnvelopeError, match=says):
            eventgrid_notification(bad)


def test_a_subscription_validation_gives_its_code_or_a_precise_422() -> None:
    event = {"id": "v", "eventType": VALIDATION_EVENT, "data": {"validationCode": "c-1"}}
    assert validation_code([event]) == "c-1"
    for body in ([], [event, event], event, [{**event, "data": {}}], [{**event, "eventType": "X"}]):
        with pytest.raises(RequestRefused) as refused:
            validation_code(body)
        assert refused.value.status == 422


def test_consume_sqs_without_a_region_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a queue URL but no region anywhere in the AWS chain
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("SQS_QUEUE_URL", "https://sqs.example/123/ct")
    for name in ("SQS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    # When the consumer starts, Then it stops with exit 2 saying what to set
    assert main(["consume", "sqs"]) == ExitCode.USAGE
    assert "set SQS_REGION" in capsys.readouterr().err


class CountingDeliveries(Deliveries):
    """Takes every notification, counting how many are being taken at once."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.in_flight = 0
        self.most_at_once = 0
        self.taken = 0

    async def take(self, notification: Notification | None) -> Taken:
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        await asyncio.sleep(0.001)  # as a commit window would, every event waits together
        self.in_flight -= 1
        self.taken += 1
        return Taken("accepted", signals=1)


async def test_an_eventgrid_batch_of_the_largest_size_is_taken_a_slice_at_a_time() -> None:
    # Given the route over deliveries that count what is taken at once
    deliveries = CountingDeliveries()
    app = FastAPI()
    app.include_router(eventgrid_routes(deliveries))
    # When Event Grid sends its largest batch (5,000 events)
    platform = message("order", "o-1", "OrderCreated")
    batch = [{"id": str(i), "eventType": "OrderCreated", "data": platform} for i in range(5000)]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bridge"
    ) as http:
        answer = await http.post(PATH, json=batch, headers={"aeg-event-type": "Notification"})
    # Then every event is taken, never more than one slice at once
    assert answer.status_code == 202, answer.text
    assert (deliveries.taken, answer.json()["signals"]) == (5000, 5000)
    assert deliveries.most_at_once == CONCURRENT_EVENTS


class FailingDeliveries(Deliveries):
    """Deliveries whose taking fails with a defect; letters are kept."""

    def __init__(self) -> None:
        self.counters = Counter()
        self.letters_posted: list[Refusal] = []

    async def take(self, notification: Notification | None) -> Taken:
        raise TypeError("a defect, its text holding the customer's jane@example.com")

    async def refuse(self, refusals: Sequence[Refusal]) -> None:
        self.letters_posted.extend(refusals)


class NoQueue:
    url = "queue"

    async def delete(self, handles: Sequence[str]) -> int:
        return 0

    async def postpone(self, handles: Sequence[tuple[str, int]]) -> int:
        return 0


@pytest.mark.parametrize("receives", [1, MAX_FAILED_RECEIVES - 1, MAX_FAILED_RECEIVES])
async def test_a_message_whose_taking_fails_stays_then_is_dead_lettered_never_ending_the_consumer(
    receives: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a consumer whose deliveries fail unexpectedly (a defect, an answer nobody foresaw)
    deliveries = FailingDeliveries()
    consumer = SqsConsumer(cast(SqsQueue, NoQueue()), deliveries, SqsSettings(queue_url="q"))
    body = json.dumps(message("customer", "c-1", "CustomerCreated"))
    received = ReceivedMessage(message_id="m-1", handle="h-1", receive_count=receives, body=body)
    # When a batch holding a message received that many times is taken
    [outcome] = await consumer.take_batch([received])
    # Then it is left on the queue until its receives reach the limit, then dead-lettered (as
    # unreadable, naming the SQS message and the error's type, never its text)
    if receives < MAX_FAILED_RECEIVES:
        assert (outcome, deliveries.letters_posted) == ("not_taken", [])
    else:
        assert outcome == "poison"
        [letter] = deliveries.letters_posted
        assert letter.letter.record_id == "sqs:m-1"
        assert "TypeError" in letter.letter.reasons[0]
    assert consumer.counters["sqs_failed"] == 1
    assert "jane@example.com" not in capsys.readouterr().out


def test_half_a_surrogate_pair_in_an_sqs_body_or_its_sns_message_is_unreadable() -> None:
    # Given a delivery whose id holds a \u escape of half a surrogate pair (valid JSON, no
    # character: the bridge would fail storing or answering it), as it is and wrapped by SNS
    delivery = json.dumps(message("customer", "c-\ud800", "CustomerCreated"))
    assert "\\ud800" in delivery
    for body in (delivery, sns_envelope(delivery)):
        # When the consumer reads it, Then it is unreadable (a letter), never a crash
        with pytest.raises(EnvelopeError, match="half a surrogate pair"):
            sqs_notification(body)
