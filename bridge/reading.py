"""How the bridge reads a request: a bounded body, JSON, and a storefront request's events
one by one (a refused event does not take the others with it)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bridge.admission import SignalRefusal, admit
from bridge.carts import StorefrontCarts
from bridge.commit import ShardPart
from bridge.routing import storefront_signal
from ct_insider.journeys.envelopes import strict_json
from ct_insider.journeys.storefront import INTAKE, MAX_EVENTS_PER_REQUEST, StorefrontEvent

# Read at most this much of a request (413 beyond): a full batch of 500 ordinary events is
# ~0.5 MB of JSON, one of 100 cart views of 100 lines ~3.5 MB; a delivery, a Pub/Sub message
# (10 MB) in base64.
MAX_EVENTS_BODY_BYTES = 4 * 1024 * 1024
MAX_DELIVERY_BODY_BYTES = 16 * 1024 * 1024
# A body must arrive within this (408 beyond): uvicorn bounds no body read, so a client
# sending a byte a minute would hold its connection and a task forever. 16 MB at 1 MB/s fits.
BODY_READ_TIMEOUT_SECONDS = 30.0


class RequestRefused(Exception):
    """A request answered 4xx as a whole, before anything of it is accepted."""

    def __init__(self, status: int, counter: str, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.counter = counter
        self.error = error
        self.detail = detail


class _Batch(BaseModel):
    """A batch as it is read: its events are validated one by one."""

    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


_ARRAY: TypeAdapter[list[Any]] = TypeAdapter(
    Annotated[list[Any], Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)]
)


def _errors(exc: ValidationError, at: list[str | int]) -> list[dict[str, Any]]:
    # Where and what, never the input itself (it may hold personal data).
    return [{"loc": [*at, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


async def read_body(
    request: Request, limit: int, timeout_seconds: float = BODY_READ_TIMEOUT_SECONDS
) -> bytes:
    """The body, refused (413) once it grows over `limit`: never more is held; refused
    (408) when it has not all arrived within `timeout_seconds` (a slow or stalled sender)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestRefused(413, "too_large", f"the body is over {limit:,} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestRefused(
            408, "slow_body", f"the body did not arrive within {timeout_seconds:g} s"
        ) from None
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return strict_json(body)
    except ValueError as exc:  # also not UTF-8, nested too deeply, half a surrogate pair
        raise RequestRefused(400, "malformed", f"malformed JSON: {exc}") from None


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def event_items(body: Any) -> tuple[list[Any], list[str | int] | None]:
    """The events of a request, and where a batch's are (None: the body is the event)."""
    try:
        if isinstance(body, list):
            return _ARRAY.validate_python(body), ["body"]
        if isinstance(body, dict) and "events" in body:
            return _Batch.model_validate(body).events, ["body", "events"]
    except ValidationError as exc:
        raise RequestRefused(
            422, "invalid", "request does not match the schema", _errors(exc, ["body"])
        ) from None
    return [body], None


def admitted_events(
    items: list[Any], at: list[str | int] | None, carts: StorefrontCarts | None = None
) -> tuple[list[ShardPart], list[dict[str, Any]]]:
    """Each event validated and admitted on its own: the parts to commit, and for each
    refused event its index, id, why (cause) and where (detail). With `carts` (cart events
    on), the events a cart's workflow gives are left to it (bridge/carts.py)."""
    parts: list[ShardPart] = []
    refused: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where: list[str | int] = ["body"] if at is None else [*at, index]
        try:
            event = StorefrontEvent.model_validate(item, context=INTAKE)
            if carts is not None and carts.takes(event):
                continue
            admitted = admit(storefront_signal(event))
        except ValidationError as exc:
            cause, detail = "invalid", _errors(exc, where)
        else:
            if not isinstance(admitted, SignalRefusal):
                parts.append(admitted)
                continue
            cause = admitted.cause
            detail = [{"loc": where, "msg": f"the event {admitted.reason}", "type": cause}]
        event_id = item.get("event_id") if isinstance(item, dict) else None
        refused.append(
            {
                "index": index,
                "event_id": event_id if isinstance(event_id, str) else None,
                "cause": cause,
                "detail": detail,
            }
        )
    return parts, refused
