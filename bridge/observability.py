"""Per-request telemetry of the bridge: a SERVER span (the root of the trace that the group
commit carries on into Temporal) and the `ct_insider_bridge_requests` counter.

Installed only while telemetry is on (ct_insider/telemetry.py), so with it off a request
goes through no extra layer at all.
"""

from __future__ import annotations

from opentelemetry import propagate, trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ct_insider import telemetry

ROUTES = frozenset(
    {
        "/webhooks/commercetools",
        "/webhooks/eventgrid",
        "/webhooks/sns",
        "/events",
        "/healthz",
        "/readyz",
        "/stats",
    }
)


def outcome_of(status: int) -> str:
    """A request's outcome as the sender sees it (a low-cardinality label)."""
    if status < 300:
        return "accepted"
    if status == 401:
        return "unauthorized"
    if status == 503:
        return "unavailable"  # the sender delivers again later
    if status < 500:
        return "invalid"
    return "error"


class RequestTelemetry:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        method = scope["method"]
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        tracer = telemetry.tracer()
        if tracer is None:
            try:
                await self._app(scope, receive, sending)
            finally:
                _count(route, status)
            return
        # A sender that traces (traceparent header) gets our spans in its trace.
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with tracer.start_as_current_span(
            f"{method} {route}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        ) as span:
            try:
                await self._app(scope, receive, sending)
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
                _count(route, status)


def _count(route: str, status: int) -> None:
    telemetry.BRIDGE_REQUESTS.add(1, {"route": route, "outcome": outcome_of(status)})
