"""Amazon SNS HTTPS subscriptions: POST /webhooks/sns.

A commercetools `SNS` subscription publishes to a topic; an HTTPS subscription of that topic
delivers to this route (authenticated like the other routes: the endpoint URL carries
`?token=<BRIDGE_TOKEN>`; the token is the check, as on every route: SNS's message signatures
are not verified). What SNS sends, each a JSON body (sent as text/plain):

- `Type: SubscriptionConfirmation`: the bridge confirms by visiting its `SubscribeURL`, only
  on an SNS endpoint (https://sns.<region>.amazonaws.com...): answered 200 once SNS took
  the confirmation, 503 if SNS could not be reached (SNS sends it again), 422 if it refused;
- `Type: Notification`: `Message` is the commercetools delivery (Platform or CloudEvents
  format), taken like a webhook delivery (bridge/delivery.py): 202, or 503 with Retry-After
  (SNS retries by the subscription's delivery policy), or 422 for a message that is no
  commercetools delivery (SNS does not retry a 4xx);
- `Type: UnsubscribeConfirmation`: acknowledged;
- with raw message delivery on, the commercetools delivery itself.

A queue subscribed to the topic holds the same envelopes: the SQS consumer unwraps them with
`sns_message` too (bridge/sqs.py).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bridge.delivery import Deliveries, NotTaken, unavailable, unreadable_refusal
from bridge.reading import (
    BODY_READ_TIMEOUT_SECONDS,
    MAX_DELIVERY_BODY_BYTES,
    RequestRefused,
    parse_json,
    read_body,
)
from ct_insider.journeys.envelopes import EnvelopeError, envelope_json, parse_delivery
from ct_insider.logging import get_logger

log = get_logger(__name__)

PATH = "/webhooks/sns"
CARRIER = "sns"  # in the letters of messages that are no commercetools delivery
# The endpoints SNS confirms subscriptions at (a SubscribeURL elsewhere is never visited).
SNS_HOST = re.compile(r"sns(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
CONFIRM_TIMEOUT_SECONDS = 10.0


def sns_envelope_type(body: Any) -> str | None:
    """The `Type` of an SNS envelope (Notification, SubscriptionConfirmation, ...); None for
    a body that is not one (raw message delivery: the commercetools delivery itself)."""
    if isinstance(body, dict) and "TopicArn" in body and isinstance(body.get("Type"), str):
        return str(body["Type"])
    return None


def _message_id(body: Any, request: Request) -> str:
    """The SNS message's id: in its envelope, or (raw message delivery) in a header."""
    found = body.get("MessageId") if isinstance(body, dict) else None
    if not isinstance(found, str):
        found = request.headers.get("x-amz-sns-message-id", "unknown")
    return found[:200]


def sns_message(body: Any) -> Any:
    """The payload of an SNS Notification envelope (its `Message`, parsed), or the body as it
    is if it is none. Raises EnvelopeError."""
    if sns_envelope_type(body) != "Notification":
        return body
    message = body.get("Message")
    if not isinstance(message, str):
        raise EnvelopeError("SNS notification: Message must be a string")
    return envelope_json(message.encode(errors="surrogatepass"), "SNS notification: Message")


class SubscriptionNotConfirmed(Exception):
    """SNS could not be reached to confirm: it sends the confirmation again."""


class SubscriptionConfirmer:
    """Visits a SubscriptionConfirmation's SubscribeURL, if it is an SNS endpoint."""

    def __init__(self, allowed_host: re.Pattern[str] = SNS_HOST, scheme: str = "https") -> None:
        """`allowed_host`, `scheme`: where a SubscribeURL may point (tests: a local stand-in)."""
        self._allowed_host = allowed_host
        self._scheme = scheme

    async def confirm(self, url: Any) -> None:
        """Raises RequestRefused (not an SNS URL, or SNS refused) or SubscriptionNotConfirmed."""
        parts = urlsplit(url) if isinstance(url, str) else None
        if (
            parts is None
            or parts.scheme != self._scheme
            or not self._allowed_host.fullmatch(parts.hostname or "")
        ):
            host = parts.hostname if parts is not None else None
            raise RequestRefused(
                422, "invalid", f"SubscribeURL is not an SNS endpoint ({host or 'no URL'})"
            )
        try:
            async with httpx.AsyncClient(timeout=CONFIRM_TIMEOUT_SECONDS) as http:
                answer = await http.get(url)
        except httpx.TransportError as exc:
            raise SubscriptionNotConfirmed(str(exc)) from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise SubscriptionNotConfirmed(f"SNS answered {answer.status_code}")
        if answer.status_code >= 400:
            raise RequestRefused(
                422, "invalid", f"SNS refused the confirmation ({answer.status_code})"
            )


def sns_routes(
    deliveries: Deliveries,
    confirmer: SubscriptionConfirmer,
    body_timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS,
) -> APIRouter:
    routes = APIRouter()
    counters = deliveries.counters

    @routes.post(
        PATH,
        status_code=202,
        summary="Amazon SNS HTTPS deliveries (envelopes or raw) and subscription confirmation",
        responses={
            200: {"description": "the subscription confirmed, or its end acknowledged"},
            400: {"description": "not JSON"},
            401: {"description": "missing or wrong bearer token"},
            413: {"description": "body over the route's limit"},
            422: {"description": "an SNS message type unknown, or a SubscribeURL not of SNS"},
            503: {"description": "not accepted, deliver again after Retry-After"},
        },
    )
    async def sns_delivery(request: Request) -> Any:
        body = parse_json(await read_body(request, MAX_DELIVERY_BODY_BYTES, body_timeout_seconds))
        kind = sns_envelope_type(body)
        if kind == "SubscriptionConfirmation":
            try:
                await confirmer.confirm(body.get("SubscribeURL"))
            except SubscriptionNotConfirmed as exc:
                counters["unavailable"] += 1
                log.warning("SNS subscription not confirmed", error=str(exc))
                return unavailable(SubscriptionNotConfirmed.__name__)
            counters["sns_confirmed"] += 1
            log.info("SNS subscription confirmed", topic=str(body.get("TopicArn")))
            return JSONResponse({"status": "confirmed"}, status_code=200)
        if kind == "UnsubscribeConfirmation":
            counters["sns_unsubscribed"] += 1
            return JSONResponse({"status": "acknowledged"}, status_code=200)
        if kind not in (None, "Notification"):
            raise RequestRefused(422, "invalid", f"unknown SNS message type {kind!r}")
        try:
            try:
                notification = parse_delivery(sns_message(body))
            except EnvelopeError as exc:
                # SNS does not retry a 4xx: the message would be gone without a trace. It
                # becomes a letter naming it (never its body), as an unreadable SQS message.
                await deliveries.refuse(
                    [unreadable_refusal(CARRIER, _message_id(body, request), str(exc))]
                )
                counters["sns_unreadable"] += 1
                return JSONResponse({"status": "dead-lettered"}, status_code=202)
            taken = await deliveries.take(notification)
        except NotTaken as exc:
            return unavailable(exc.reason)
        return taken.answer()

    return routes
