"""The bridge's HTTP API (FastAPI; the OpenAPI document is served at /openapi.json).

- POST /webhooks/commercetools: subscription deliveries (Platform, CloudEvents, Pub/Sub
  push, EventBridge)
- POST (and OPTIONS) /webhooks/eventgrid: Azure Event Grid deliveries and handshakes
  (bridge/eventgrid.py)
- POST /webhooks/sns: Amazon SNS HTTPS deliveries and subscription confirmation
  (bridge/sns.py)
- POST /events: storefront events, one or a batch
- GET /healthz, /readyz; GET /stats (counters)

The POST routes need `Authorization: Bearer <BRIDGE_TOKEN>` or `?token=<BRIDGE_TOKEN>`.
What an answer tells the sender:
- 2xx: Temporal has durably stored the signals. A commercetools delivery that is well-formed
  but that no journey can take is in the dead-letter store, with why (bridge/letters.py);
- 4xx: the request, or the events it lists, are wrong as they are: sending them again will
  not help (a batch's other events are stored all the same);
- 503 + Retry-After: nothing was refused for good, something a retry can fix was in the way
  (Temporal, commercetools unreachable): deliver again.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import Field, SecretStr, TypeAdapter

from bridge.auth import BearerTokenMiddleware
from bridge.carts import StorefrontCarts
from bridge.delivery import Deliveries, NotTaken, unavailable
from bridge.dispatch import Dispatcher, TemporalUnavailable
from bridge.eventgrid import eventgrid_routes
from bridge.letters import LetterBox
from bridge.observability import RequestTelemetry
from bridge.reading import (
    BODY_READ_TIMEOUT_SECONDS,
    MAX_DELIVERY_BODY_BYTES,
    MAX_EVENTS_BODY_BYTES,
    RequestRefused,
    admitted_events,
    event_items,
    is_json,
    parse_json,
    read_body,
)
from bridge.routing import NotificationRouter
from bridge.sns import SubscriptionConfirmer, sns_routes
from ct_insider import telemetry
from ct_insider.commercetools.models import ChangeDelivery, MessageDelivery
from ct_insider.deadletters import DeadLetterStore
from ct_insider.journeys.envelopes import EnvelopeError, parse_delivery
from ct_insider.journeys.storefront import (
    MAX_EVENTS_PER_REQUEST,
    StorefrontBatch,
    StorefrontEvent,
)
from ct_insider.logging import get_logger

log = get_logger(__name__)


# What /events documents (OpenAPI): one event, {"events": [...]}, or an array (the body is
# read event by event: bridge/reading.py).
EVENTS_BODY: TypeAdapter[Any] = TypeAdapter(
    StorefrontEvent
    | StorefrontBatch
    | Annotated[list[StorefrontEvent], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]
)


# What /webhooks/commercetools documents (read by hand too: bridge/reading.py,
# ct_insider/journeys/envelopes.py): a Platform delivery (a Message or a change), as it is,
# as CloudEvents, or wrapped by Pub/Sub push or EventBridge.
PLATFORM_DELIVERY: TypeAdapter[Any] = TypeAdapter(MessageDelivery | ChangeDelivery)


def _delivery_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The delivery body's JSON schema, and the component schemas it refers to."""
    platform = PLATFORM_DELIVERY.json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = platform.pop("$defs", {})
    # notificationType has a default in the model but every delivery names it (the router
    # tells messages from changes by it).
    message = defs["MessageDelivery"]
    message["required"] = sorted({*message.get("required", []), "notificationType"})
    cloudevent = {
        "type": "object",
        "title": "CloudEvents delivery",
        "required": ["specversion", "data"],
        "properties": {"specversion": {"const": "1.0"}, "data": platform},
    }
    pubsub = {
        "type": "object",
        "title": "Pub/Sub push",
        "required": ["message"],
        "properties": {
            "message": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {
                        "type": "string",
                        "contentEncoding": "base64",
                        "description": "a Platform or CloudEvents delivery: JSON, base64",
                    },
                },
            },
            "subscription": {"type": "string"},
        },
    }
    eventbridge = {
        "type": "object",
        "title": "EventBridge event",
        "required": ["detail-type", "detail"],
        "properties": {"detail-type": {"type": "string"}, "detail": platform},
    }
    return {"anyOf": [platform, cloudevent, pubsub, eventbridge]}, defs


ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "not JSON (syntax, not UTF-8, nested too deeply, half a surrogate pair)"},
    401: {"description": "missing or wrong bearer token"},
    408: {"description": "the body did not arrive in time (a slow or stalled sender)"},
    413: {"description": "body over the route's limit"},
    422: {"description": "wrong as it is: the failing fields (a batch: each refused event)"},
    503: {"description": "not accepted, deliver again after Retry-After"},
}


class BridgeApi(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the bodies of /events (read by hand, event by event) and
        of /webhooks/commercetools (read by hand, in any envelope)."""
        if self.openapi_schema is None:
            schema = super().openapi()
            body = EVENTS_BODY.json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            schema["paths"]["/events"]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
            delivery, defs = _delivery_schema()
            components.update(defs)
            schema["paths"]["/webhooks/commercetools"]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": delivery}},
            }
        return self.openapi_schema or {}


def create_app(
    token: SecretStr,
    router: NotificationRouter,
    dispatcher: Dispatcher,
    letters: DeadLetterStore,
    *,
    sns_confirmer: SubscriptionConfirmer | None = None,
    body_timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS,
) -> FastAPI:
    """`sns_confirmer`: where SNS subscription confirmations may be visited (default: SNS's
    own endpoints); `body_timeout_seconds`: how long a request's body may take to arrive
    (408 beyond)."""
    app = BridgeApi(
        title="ct-insider bridge",
        summary="commercetools subscription deliveries and storefront events to Insider journeys",
        version="1",
    )
    counters: Counter[str] = Counter()
    deliveries = Deliveries(router, dispatcher, LetterBox(letters, counters), counters)

    app.state.deliveries = deliveries  # for a queue consumer beside the routes (bridge/sqs.py)
    app.add_middleware(BearerTokenMiddleware, token=token, counters=counters)
    if telemetry.active():  # outermost: it sees the 401s too
        app.add_middleware(RequestTelemetry)

    @app.exception_handler(RequestRefused)
    async def refused(_request: Request, exc: RequestRefused) -> JSONResponse:
        counters[exc.counter] += 1
        body: dict[str, Any] = {"error": exc.error}
        if exc.detail is not None:
            body["detail"] = exc.detail
        return JSONResponse(body, status_code=exc.status)

    @app.post(
        "/webhooks/commercetools",
        status_code=202,
        responses=ANSWERS,
        summary="A commercetools subscription delivery, in any supported envelope",
    )
    async def commercetools_delivery(request: Request) -> Any:
        try:
            notification = parse_delivery(
                parse_json(await read_body(request, MAX_DELIVERY_BODY_BYTES, body_timeout_seconds))
            )
        except EnvelopeError as exc:
            raise RequestRefused(422, "invalid", str(exc)) from None
        try:
            taken = await deliveries.take(notification)
        except NotTaken as exc:
            return unavailable(exc.reason)
        return taken.answer()

    app.include_router(eventgrid_routes(deliveries, body_timeout_seconds))
    app.include_router(
        sns_routes(deliveries, sns_confirmer or SubscriptionConfirmer(), body_timeout_seconds)
    )

    @app.post(
        "/events",
        status_code=202,
        responses={**ANSWERS, 415: {"description": "not sent as application/json"}},
        summary="Storefront events: one event, {'events': [...]}, or a JSON array",
    )
    async def storefront_events(request: Request) -> Any:
        if not is_json(request.headers.get("content-type")):
            raise RequestRefused(415, "unsupported_media_type", "send JSON: application/json")
        body = await read_body(request, MAX_EVENTS_BODY_BYTES, body_timeout_seconds)
        items, at = event_items(parse_json(body))
        carts = StorefrontCarts() if dispatcher.carts is not None else None
        parts, refused = admitted_events(items, at, carts)
        shards = 0
        cart_signals = carts.signals if carts is not None else []
        if parts or cart_signals:
            try:
                shards = await dispatcher.dispatch([*parts, *cart_signals])
            except TemporalUnavailable as exc:
                counters["unavailable"] += 1
                log.warning("events not accepted", error=str(exc), events=len(parts))
                return unavailable(type(exc).__name__)
            counters["events"] += len(parts)
        if carts is not None and carts.left_to_cart:
            counters["events_left_to_cart"] += carts.left_to_cart
        for refusal in refused:
            counters[f"events_refused:{refusal['cause']}"] += 1
        if refused:
            return JSONResponse(
                {
                    "error": f"{len(refused)} of {len(items)} events refused, the others stored",
                    "accepted": len(parts),
                    "shards": shards,
                    "refused": refused,
                },
                status_code=422,
            )
        answer: dict[str, Any] = {"status": "accepted", "events": len(parts), "shards": shards}
        if carts is not None and carts.left_to_cart:
            answer["left_to_cart"] = carts.left_to_cart  # their carts' changes give them
        return answer

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        if await dispatcher.ready():
            return {"status": "ready"}
        return JSONResponse({"status": "Temporal unreachable"}, status_code=503)

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        stats = {
            **counters,
            "journey_commits": dispatcher.journeys.commits,
            "journey_windows_as_updates": dispatcher.journeys.updates,
            "journey_update_fallbacks": dispatcher.journeys.fallbacks,
        }
        if dispatcher.carts is not None:
            stats.update(
                cart_workflows_started=dispatcher.carts.started,
                cart_starts_refused=dispatcher.carts.refused,
            )
        status = dispatcher.journeys.layout.latest
        if status is not None:  # the layout it routes by
            layout = status.in_effect(datetime.now(UTC))
            stats.update(layout_epoch=layout.epoch, journey_shards=layout.shards)
        return stats

    return app
