"""Pull a commercetools `SQS` subscription's queue into the bridge (`ct-insider consume sqs`).

Each message is taken exactly like a webhook delivery (bridge/delivery.py: the same router,
admission, group commit and dead-letter store), with the same guarantee, spelled in SQS:

- deleted once taken: its signals stored by Temporal (signal-with-start accepted), or it is
  one the connector does not use, or it is dead-lettered in our store;
- poison (not JSON, not a commercetools delivery, or well-formed but unroutable): a letter
  with the reason (path realtime, entity notification; `ct-insider dlq list`), counted in
  /stats (`dead_lettered:unreadable`, `sqs_poison`), then deleted;
- not taken (Temporal away, a journey shard behind, commercetools or the dead-letter store
  unreachable): left on the queue and made visible again after a backoff that doubles with
  each receive of the message (SQS_RETRY_MIN_SECONDS .. SQS_RETRY_MAX_SECONDS, from its
  ApproximateReceiveCount); while a whole batch is not taken the consumer waits before it
  receives again, so an outage is not a busy loop.

Receives long-poll (SQS_WAIT_SECONDS) up to SQS_BATCH_SIZE messages, which are taken at
once (the group commit gathers them into one signal per shard), then deleted in one batch
request. A message whose delete fails is received again: its journey signals are dropped by
their shard's dedupe (the key is the commercetools message id); catalog changes and cart
signals are taken again, which they bear (a refresh, a nudge).

The body is what commercetools sends (Platform or CloudEvents format); a queue subscribed
to an SNS topic without raw message delivery holds SNS envelopes, which are unwrapped.

A queue's redrive policy moves a message to its dead-letter queue after maxReceiveCount
receives, and a message not taken during an outage is received again and again: give the
policy a count that outlasts the outages to ride out (with the default backoff, 100 receives
last ~1.5 hours) or none.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bridge.delivery import Deliveries, NotTaken, unreadable_refusal
from bridge.sns import sns_envelope_type, sns_message
from ct_insider import telemetry
from ct_insider.config import SqsSettings
from ct_insider.journeys.envelopes import (
    EnvelopeError,
    Notification,
    envelope_json,
    parse_delivery,
)
from ct_insider.logging import get_logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = get_logger(__name__)

CARRIER = "sqs"
# SQS: ChangeMessageVisibility takes whole seconds, at most 12 hours.
MAX_VISIBILITY_SECONDS = 43_200
# A message whose taking fails unexpectedly (a defect, an answer nobody foresaw) is left on the
# queue this many receives, then dead-lettered: never the consumer's end, never a loop.
MAX_FAILED_RECEIVES = 5
Outcome = Literal["taken", "poison", "not_taken"]


def sqs_notification(body: str) -> Notification | None:
    """The notification of a message body (None: the subscription's test notification).
    Raises EnvelopeError."""
    parsed = envelope_json(body.encode(errors="surrogatepass"), "SQS message body")
    kind = sns_envelope_type(parsed)
    if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        # (A topic of another account asks the queue's owner to confirm: the consumer does
        # not visit URLs a queue hands it.)
        raise EnvelopeError(
            f"an SNS {kind}: confirm the subscription in SNS (its SubscribeURL, or subscribe "
            "the queue from the topic's account)"
        )
    # A queue subscribed to an SNS topic without raw message delivery holds SNS envelopes.
    return parse_delivery(sns_message(parsed))


def retry_delay(attempt: int, settings: SqsSettings) -> float:
    """Seconds to wait after `attempt` (1, 2, ...) failed: doubled with each, capped."""
    delay: float = settings.retry_min_seconds * 2.0 ** max(0, min(attempt - 1, 32))
    return min(delay, settings.retry_max_seconds)


def visibility_delay(receive_count: int, settings: SqsSettings) -> int:
    """Seconds until a message not taken is received again (SQS takes whole seconds)."""
    return min(math.ceil(retry_delay(receive_count, settings)), MAX_VISIBILITY_SECONDS)


class SqsQueue:
    """The queue's four calls, off the event loop (boto3 blocks)."""

    def __init__(self, settings: SqsSettings) -> None:
        self.url = settings.queue_url
        self._wait = settings.wait_seconds
        self._batch = settings.batch_size
        session = boto3.session.Session(region_name=settings.region)
        self._client: SQSClient = session.client(
            "sqs",
            endpoint_url=settings.endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                read_timeout=settings.wait_seconds + 10,  # a long poll answers within its wait
            ),
        )

    async def receive(self) -> list[MessageTypeDef]:
        answer = await asyncio.to_thread(
            self._client.receive_message,
            QueueUrl=self.url,
            MaxNumberOfMessages=self._batch,
            WaitTimeSeconds=self._wait,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return list(answer.get("Messages", []))

    async def delete(self, handles: Sequence[str]) -> int:
        """Delete messages (by receipt handle); returns how many SQS refused to delete."""
        answer = await asyncio.to_thread(
            self._client.delete_message_batch,
            QueueUrl=self.url,
            Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)],
        )
        return len(answer.get("Failed", []))

    async def postpone(self, handles: Sequence[tuple[str, int]]) -> int:
        """Make messages visible again in so many seconds; returns how many SQS refused."""
        answer = await asyncio.to_thread(
            self._client.change_message_visibility_batch,
            QueueUrl=self.url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": seconds}
                for i, (h, seconds) in enumerate(handles)
            ],
        )
        return len(answer.get("Failed", []))

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    handle: str
    receive_count: int
    body: str


def _received(message: MessageTypeDef) -> ReceivedMessage:
    count = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
    return ReceivedMessage(
        message_id=message.get("MessageId", "?"),
        handle=message.get("ReceiptHandle", ""),
        receive_count=int(count) if count.isdigit() else 1,
        body=message.get("Body", ""),
    )


class SqsConsumer:
    def __init__(
        self,
        queue: SqsQueue,
        deliveries: Deliveries,
        settings: SqsSettings,
    ) -> None:
        self._queue = queue
        self._deliveries = deliveries
        self._settings = settings
        self._stopping = asyncio.Event()
        self.counters: Counter[str] = deliveries.counters  # the bridge's /stats

    def stop(self) -> None:
        """Finish the batch being taken, then return from run()."""
        self._stopping.set()

    async def run(self) -> None:
        failures = 0  # consecutive receive rounds that took nothing (or could not receive)
        while not self._stopping.is_set():
            messages = await self._receive()
            if messages is None:
                failures += 1
                await self._pause(failures)
                continue
            if not messages:
                failures = 0
                continue
            outcomes = await self.take_batch([_received(m) for m in messages])
            if outcomes and all(o == "not_taken" for o in outcomes):
                failures += 1
                await self._pause(failures)
            else:
                failures = 0

    async def _receive(self) -> list[MessageTypeDef] | None:
        """A batch (maybe empty); None if SQS could not be reached, or the consumer stops."""
        receiving = asyncio.ensure_future(self._queue.receive())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not receiving.done():
            # Left to finish in its thread: what it receives becomes visible again after the
            # queue's visibility timeout, and is taken then.
            receiving.add_done_callback(_ignore_result)
            return None
        try:
            messages = receiving.result()
        except (BotoCoreError, ClientError) as exc:
            self.counters["sqs_receive_failed"] += 1
            log.warning("SQS receive failed", error=str(exc), queue=self._queue.url)
            return None
        return messages

    async def take_batch(self, batch: Sequence[ReceivedMessage]) -> list[Outcome]:
        """Take every message at once, then delete what was taken or dead-lettered and
        postpone what was not."""
        started = time.monotonic()
        outcomes: list[Outcome] = list(await asyncio.gather(*(self._take(m) for m in batch)))
        done = [m.handle for m, o in zip(batch, outcomes, strict=True) if o != "not_taken"]
        again = [
            (m.handle, visibility_delay(m.receive_count, self._settings))
            for m, o in zip(batch, outcomes, strict=True)
            if o == "not_taken"
        ]
        try:
            if done and (refused := await self._queue.delete(done)):
                # Received again later: taken again (journey signals deduplicated by key).
                self.counters["sqs_delete_refused"] += refused
                log.warning("SQS refused to delete messages", refused=refused)
            if again and (refused := await self._queue.postpone(again)):
                log.warning("SQS refused to postpone messages", refused=refused)
        except (BotoCoreError, ClientError) as exc:
            self.counters["sqs_delete_failed"] += 1
            log.warning("SQS delete or postpone failed", error=str(exc), queue=self._queue.url)
        for outcome in outcomes:
            self.counters[f"sqs_{outcome}"] += 1
            telemetry.BRIDGE_REQUESTS.add(1, {"route": CARRIER, "outcome": _OUTCOMES[outcome]})
        log.debug(
            "SQS batch taken",
            messages=len(batch),
            deleted=len(done),
            postponed=len(again),
            seconds=round(time.monotonic() - started, 3),
        )
        return outcomes

    async def _take(self, message: ReceivedMessage) -> Outcome:
        try:
            try:
                notification = sqs_notification(message.body)
            except EnvelopeError as exc:
                await self._deliveries.refuse(
                    [unreadable_refusal(CARRIER, message.message_id, str(exc))]
                )
                return "poison"
            taken = await self._deliveries.take(notification)
        except NotTaken as exc:
            log.info("SQS message not taken, received again later", reason=exc.reason)
            return "not_taken"
        except Exception as exc:  # (its text may hold the message's data: not logged)
            return await self._failed(message, type(exc).__name__)
        return "poison" if taken.status == "dead-lettered" else "taken"

    async def _failed(self, message: ReceivedMessage, error: str) -> Outcome:
        log.error(
            "SQS message could not be taken",
            message_id=message.message_id,
            error=error,
            receives=message.receive_count,
        )
        self.counters["sqs_failed"] += 1
        if message.receive_count < MAX_FAILED_RECEIVES:
            return "not_taken"
        reason = f"taking it failed on {message.receive_count} receives ({error})"
        try:
            await self._deliveries.refuse([unreadable_refusal(CARRIER, message.message_id, reason)])
        except NotTaken:
            return "not_taken"
        return "poison"

    async def _pause(self, failures: int) -> None:
        delay = retry_delay(failures, self._settings)
        self.counters["sqs_pauses"] += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)


# As the bridge's requests counter labels an answer (bridge/observability.py).
_OUTCOMES: dict[Outcome, str] = {
    "taken": "accepted",
    "poison": "invalid",
    "not_taken": "unavailable",
}


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
