"""Azure Event Grid webhook deliveries: POST /webhooks/eventgrid (and its OPTIONS).

A commercetools `EventGrid` subscription publishes to an Event Grid topic; an Event Grid
event subscription of type webhook delivers to this route (authenticate it like the other
routes: the endpoint URL carries `?token=<BRIDGE_TOKEN>`, which Event Grid sends with every
request, the handshakes too). What Event Grid sends:

- the validation handshake of the Event Grid schema: `aeg-event-type: SubscriptionValidation`
  and one `Microsoft.EventGrid.SubscriptionValidationEvent`, answered 200
  `{"validationResponse": <data.validationCode>}`;
- the CloudEvents 1.0 abuse-protection handshake: OPTIONS with `WebHook-Request-Origin`,
  answered 200 with `WebHook-Allowed-Origin` (that origin) and `WebHook-Allowed-Rate: *`;
- events, `aeg-event-type: Notification`: a JSON array of Event Grid events whose `data` is
  the commercetools delivery (Platform or CloudEvents format), or CloudEvents (one, or a
  batch as an array) whose `data` is the Platform payload;
- `aeg-event-type: SubscriptionDeletion`: acknowledged.

Each event is taken like a webhook delivery (bridge/delivery.py). The answer is for the
whole batch, as Event Grid retries or dead-letters a batch whole: 202 once every event is
stored, or dead-lettered in our store (an event that is no commercetools delivery becomes a
letter naming its id and why, as an unreadable SQS message does: Event Grid retries a 422 like
a 5xx, so refusing it would send the whole batch again for a day); 503 with Retry-After if
any could not be (Event Grid sends the batch again: journey signals stored are deduplicated by
the shards; catalog changes and cart signals are taken again, which they bear). 422 only for
a body that holds no event at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from bridge.delivery import Deliveries, NotTaken, Taken, unavailable, unreadable_refusal
from bridge.letters import Refusal
from bridge.reading import (
    BODY_READ_TIMEOUT_SECONDS,
    MAX_DELIVERY_BODY_BYTES,
    RequestRefused,
    parse_json,
    read_body,
)
from ct_insider.journeys.envelopes import EnvelopeError, Notification, parse_delivery
from ct_insider.logging import get_logger

log = get_logger(__name__)

PATH = "/webhooks/eventgrid"
CARRIER = "eventgrid"  # in the letters of events that are no commercetools delivery
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
# Events of one batch taken at once: each waits for its shard's commit window, so a batch
# of Event Grid's maximum (5,000) goes through a slice at a time rather than filling the
# shards' queues of windows (bridge/commit.py MAX_QUEUED_WINDOWS) in one go.
CONCURRENT_EVENTS = 100


def eventgrid_notification(event: Any) -> Notification | None:
    """The commercetools notification one event carries (None: the subscription's test
    notification). Raises EnvelopeError."""
    if not isinstance(event, dict):
        raise EnvelopeError("an Event Grid event must be a JSON object")
    if "specversion" in event:  # CloudEvents schema: the event is commercetools' own
        return parse_delivery(event)
    if "eventType" in event and "data" in event:  # Event Grid schema
        return parse_delivery(event["data"])
    raise EnvelopeError("neither an Event Grid event (eventType, data) nor a CloudEvent")


def validation_code(events: Any) -> str:
    """The code of a SubscriptionValidation request; raises RequestRefused (400/422)."""
    if not isinstance(events, list) or len(events) != 1 or not isinstance(events[0], dict):
        raise RequestRefused(422, "invalid", "a subscription validation is one event in an array")
    event = events[0]
    data = event.get("data")
    code = data.get("validationCode") if isinstance(data, dict) else None
    if event.get("eventType") != VALIDATION_EVENT or not isinstance(code, str) or not code:
        raise RequestRefused(
            422, "invalid", f"expected a {VALIDATION_EVENT} with data.validationCode"
        )
    return code


def eventgrid_routes(
    deliveries: Deliveries, body_timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS
) -> APIRouter:
    routes = APIRouter()
    counters = deliveries.counters

    @routes.options(PATH, include_in_schema=False)
    async def abuse_protection(request: Request) -> Response:
        origin = request.headers.get("webhook-request-origin")
        if not origin:
            raise RequestRefused(400, "malformed", "OPTIONS needs WebHook-Request-Origin")
        counters["eventgrid_handshake"] += 1
        return Response(
            status_code=200,
            headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"},
        )

    @routes.post(
        PATH,
        status_code=202,
        summary="Azure Event Grid deliveries (Event Grid or CloudEvents schema) and handshake",
        responses={
            200: {"description": "the subscription validation answered"},
            400: {"description": "not JSON"},
            401: {"description": "missing or wrong bearer token"},
            413: {"description": "body over the route's limit"},
            422: {"description": "a body that holds no event"},
            503: {"description": "not accepted, deliver the batch again after Retry-After"},
        },
    )
    async def eventgrid_delivery(request: Request) -> Any:
        kind = request.headers.get("aeg-event-type", "")
        body = parse_json(await read_body(request, MAX_DELIVERY_BODY_BYTES, body_timeout_seconds))
        if kind == "SubscriptionValidation":
            code = validation_code(body)
            counters["eventgrid_validated"] += 1
            log.info("Event Grid subscription validated")
            return JSONResponse({"validationResponse": code}, status_code=200)
        if kind == "SubscriptionDeletion":
            counters["eventgrid_deleted"] += 1
            return JSONResponse({"status": "acknowledged"}, status_code=200)
        events: list[Any] = body if isinstance(body, list) else [body]
        if not events:
            raise RequestRefused(422, "invalid", "an empty batch")
        unreadable: list[Refusal] = []
        readable: list[Notification | None] = []
        for index, event in enumerate(events):
            try:
                readable.append(eventgrid_notification(event))
            except EnvelopeError as exc:
                event_id = event.get("id") if isinstance(event, dict) else None
                name = event_id if isinstance(event_id, str) else f"#{index}"
                unreadable.append(unreadable_refusal(CARRIER, name[:200], str(exc)))
        try:
            if unreadable:
                await deliveries.refuse(unreadable)
        except NotTaken as exc:
            return unavailable(exc.reason)
        taken: list[Taken] = []
        for start in range(0, len(readable), CONCURRENT_EVENTS):
            results = await asyncio.gather(
                *(deliveries.take(n) for n in readable[start : start + CONCURRENT_EVENTS]),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, NotTaken):
                    return unavailable(result.reason)
                if isinstance(result, BaseException):
                    raise result
                taken.append(result)
        counters["eventgrid_events"] += len(taken)
        outcome = {
            "events": len(events),
            "signals": sum(t.signals for t in taken),
            "statuses": {s: sum(t.status == s for t in taken) for s in {t.status for t in taken}},
        }
        if unreadable:
            counters["eventgrid_unreadable"] += len(unreadable)
            outcome["dead_lettered"] = [r.letter.record_id for r in unreadable]
        return {"status": "accepted", **outcome}

    return routes
