"""The bridge's HTTP API (FastAPI; the OpenAPI document is served at /openapi.json).

- POST /webhooks/commercetools: subscription deliveries (Platform, CloudEvents, Pub/Sub
  push, EventBridge)
- POST /events: storefront events, one or a batch
- GET /healthz, /readyz; GET /stats (counters)

Both POST routes need `Authorization: Bearer <BRIDGE_TOKEN>` or `?token=<BRIDGE_TOKEN>`. A
2xx answer means Temporal has durably stored the signals; 503 means it has not (redeliver).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from bridge.auth import BearerTokenMiddleware
from bridge.dispatch import Dispatcher, TemporalUnavailable
from bridge.observability import RequestTelemetry
from bridge.routing import Ignored, NotificationRouter, storefront_signal
from ct_insider import telemetry
from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.journeys.envelopes import EnvelopeError, parse_delivery
from ct_insider.journeys.storefront import StorefrontBatch, StorefrontEvent
from ct_insider.logging import get_logger

log = get_logger(__name__)

RETRY_AFTER_SECONDS = "5"


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        {"error": "temporarily unavailable, deliver again", "reason": reason},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def create_app(token: SecretStr, router: NotificationRouter, dispatcher: Dispatcher) -> FastAPI:
    app = FastAPI(
        title="ct-insider bridge",
        summary="commercetools subscription deliveries and storefront events to Insider journeys",
        version="1",
    )
    counters: Counter[str] = Counter()

    app.add_middleware(BearerTokenMiddleware, token=token, counters=counters)
    if telemetry.active():  # outermost: it sees the 401s too
        app.add_middleware(RequestTelemetry)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and what, never the input itself (it may hold personal data).
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in exc.errors()
        ]
        if any(error["type"] == "json_invalid" for error in errors):
            counters["malformed"] += 1
            return JSONResponse({"error": "malformed JSON", "detail": errors}, status_code=400)
        counters["invalid"] += 1
        return JSONResponse(
            {"error": "request does not match the schema", "detail": errors}, status_code=422
        )

    @app.post(
        "/webhooks/commercetools",
        status_code=202,
        responses={400: {}, 401: {}, 422: {}, 503: {}},
        summary="A commercetools subscription delivery, in any supported envelope",
    )
    async def commercetools_delivery(request: Request) -> Any:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            counters["malformed"] += 1
            return JSONResponse({"error": f"malformed JSON: {exc}"}, status_code=400)
        try:
            notification = parse_delivery(body)
        except EnvelopeError as exc:
            counters["invalid"] += 1
            return JSONResponse({"error": str(exc)}, status_code=422)
        if notification is None:
            counters["test_notification"] += 1
            return {"status": "acknowledged", "reason": "subscription test notification"}
        try:
            signals = await router.signals(notification)
            await dispatcher.dispatch(signals)
        except Ignored as ignored:
            counters[f"ignored:{notification.type}"] += 1
            return {"status": "ignored", "reason": ignored.reason}
        except (TemporalUnavailable, CommercetoolsError) as exc:
            counters["unavailable"] += 1
            log.warning("delivery not accepted", error=str(exc), type=notification.type)
            return _unavailable(type(exc).__name__)
        counters[f"accepted:{notification.type}"] += 1
        return {"status": "accepted", "signals": len(signals)}

    @app.post(
        "/events",
        status_code=202,
        responses={400: {}, 401: {}, 422: {}, 503: {}},
        summary="Storefront events: one event, {'events': [...]}, or a JSON array",
    )
    async def storefront_events(
        body: StorefrontEvent | StorefrontBatch | list[StorefrontEvent],
    ) -> Any:
        if isinstance(body, StorefrontEvent):
            events = [body]
        elif isinstance(body, StorefrontBatch):
            events = body.events
        else:
            events = body
        if not events:
            return JSONResponse({"error": "no events"}, status_code=422)
        try:
            shards = await dispatcher.dispatch([storefront_signal(e) for e in events])
        except TemporalUnavailable as exc:
            counters["unavailable"] += 1
            log.warning("events not accepted", error=str(exc), events=len(events))
            return _unavailable(type(exc).__name__)
        counters["events"] += len(events)
        return {"status": "accepted", "events": len(events), "shards": shards}

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
        stats = {**counters, "journey_commits": dispatcher.journeys.commits}
        status = dispatcher.journeys.layout.latest
        if status is not None:  # the layout it routes by
            layout = status.in_effect(datetime.now(UTC))
            stats.update(layout_epoch=layout.epoch, journey_shards=layout.shards)
        return stats

    return app
