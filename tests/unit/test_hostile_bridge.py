"""Attacks on the bridge's HTTP surface, in-process (tests/hostile_bridge.py): bodies over the
limit, deep nesting, invalid UTF-8 and half surrogate pairs, wrong content types, forged or
missing tokens, a stalled sender, a flood from one client. Never a 5xx for bad input, never a
stack trace or a secret in an answer or a log line, and the bridge keeps answering."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from bridge.eventgrid import PATH as EVENTGRID_PATH
from bridge.reading import MAX_DELIVERY_BODY_BYTES, MAX_EVENTS_BODY_BYTES
from bridge.sns import PATH as SNS_PATH
from tests.hostile_bridge import CT_SECRET, TOKEN, asgi_client, hostile_bridge, product_view

EVENTS = "/events"
WEBHOOK = "/webhooks/commercetools"
JSON = "application/json"


def _pubsub(data: bytes) -> bytes:
    message = {"data": base64.b64encode(data).decode(), "messageId": "1"}
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


def _assert_clean(text: str) -> None:
    for leak in ("Traceback", 'File "', TOKEN, CT_SECRET):
        assert leak not in text


# (what, path, body, content type, extra headers, expected status)
ATTACKS: list[tuple[str, str, bytes, str | None, dict[str, str], int]] = [
    ("events over the limit", EVENTS, b" " * (MAX_EVENTS_BODY_BYTES + 1), JSON, {}, 413),
    ("delivery over the limit", WEBHOOK, b" " * (MAX_DELIVERY_BODY_BYTES + 1), JSON, {}, 413),
    ("nested 100,000 deep", EVENTS, b"[" * 100_000 + b"]" * 100_000, JSON, {}, 400),
    ("delivery nested 100,000 deep", WEBHOOK, b'{"a":' * 100_000 + b"1", JSON, {}, 400),
    ("invalid UTF-8", EVENTS, b'{"event_id": "\xff\xfe"}', JSON, {}, 400),
    ("half a surrogate pair", EVENTS, b'{"event_id": "\\ud800"}', JSON, {}, 400),
    ("half a pair in a delivery", WEBHOOK, b'{"type": "\\udc00x"}', JSON, {}, 400),
    ("half a pair in Pub/Sub data", WEBHOOK, _pubsub(b'{"id": "\\ud83d"}'), JSON, {}, 422),
    ("Pub/Sub data nested deep", WEBHOOK, _pubsub(b"[" * 100_000), JSON, {}, 422),
    ("empty body", EVENTS, b"", JSON, {}, 400),
    ("JSON null", EVENTS, b"null", JSON, {}, 422),
    ("a number for a delivery", WEBHOOK, b"1e999999", JSON, {}, 422),
    ("text/plain", EVENTS, json.dumps(product_view()).encode(), "text/plain", {}, 415),
    ("no content type", EVENTS, json.dumps(product_view()).encode(), None, {}, 415),
    ("form body", EVENTS, b"event_id=1", "application/x-www-form-urlencoded", {}, 415),
    ("empty batch", EVENTS, b'{"events": []}', JSON, {}, 422),
    (
        "501 events",
        EVENTS,
        json.dumps([product_view(f"e{n}") for n in range(501)]).encode(),
        JSON,
        {},
        422,
    ),
    ("forged token", EVENTS, b"{}", JSON, {"Authorization": "Bearer " + TOKEN[:-1] + "x"}, 401),
    ("token prefix", EVENTS, b"{}", JSON, {"Authorization": "Bearer " + TOKEN[:8]}, 401),
    ("no token", WEBHOOK, b"{}", JSON, {"Authorization": ""}, 401),
    ("basic auth", WEBHOOK, b"{}", JSON, {"Authorization": "Basic " + TOKEN}, 401),
    ("padded token", EVENTS, b"{}", JSON, {"Authorization": "Bearer  " + TOKEN}, 401),
]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "headers", "expected"),
    [attack[1:] for attack in ATTACKS],
    ids=[attack[0] for attack in ATTACKS],
)
async def test_bad_input_gets_a_precise_4xx_without_traces_or_secrets(
    path: str, body: bytes, content_type: str | None, headers: dict[str, str], expected: int
) -> None:
    bridge = hostile_bridge()
    async with asgi_client(bridge) as http:
        if content_type is not None:
            headers = {"Content-Type": content_type, **headers}
        with capture_logs() as logs:
            # When the bridge is sent a bad request
            answer = await http.post(path, content=body, headers=headers)
        # Then it is answered with the precise 4xx, a JSON reason, and nothing stored
        assert answer.status_code == expected, answer.text[:300]
        assert answer.json()["error"]
        assert bridge.dispatcher.dispatched == []
        _assert_clean(answer.text)
        _assert_clean(repr(logs))
        # And it still answers
        assert (await http.get("/healthz")).status_code == 200


async def test_a_token_is_never_accepted_from_another_place() -> None:
    # Given the right token in a header the bridge does not read
    bridge = hostile_bridge()
    async with asgi_client(bridge) as http:
        answer = await http.post(
            EVENTS, json=product_view(), headers={"Authorization": "", "X-Token": TOKEN}
        )
        # Then it is refused; the query-string token (push subscriptions) is accepted
        assert answer.status_code == 401
        accepted = await http.post(
            EVENTS, params={"token": TOKEN}, json=product_view(), headers={"Authorization": ""}
        )
        assert accepted.status_code == 202
        assert len(bridge.dispatcher.dispatched) == 1


async def _call(app: Any, receive: Any, path: str) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"100000"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("bridge.test", 80),
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("path", [EVENTS, WEBHOOK, EVENTGRID_PATH, SNS_PATH])
async def test_a_sender_that_stalls_mid_body_is_answered_408(path: str) -> None:
    # Given a bridge that waits 0.2 s for a body, and a client that sends a first chunk and
    # then nothing more (a slow-loris sender holding a connection and a task)
    bridge = hostile_bridge(body_timeout_seconds=0.2)
    chunks = [{"type": "http.request", "body": b'{"event_id": "e', "more_body": True}]
    stalled = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if chunks:
            return chunks.pop()
        stalled.set()
        await asyncio.Event().wait()  # never more
        return {"type": "http.disconnect"}

    # When it sends its request
    sent = await _call(bridge.app, receive, path)
    # Then the bridge gave up on the body and answered 408, having stored nothing
    assert stalled.is_set()
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"did not arrive within 0.2 s" in body
    assert bridge.dispatcher.dispatched == []


async def test_a_flood_from_one_client_is_answered_and_the_bridge_stays_up() -> None:
    # Given one client sending 300 requests at once: good events, bad ones, forged tokens
    bridge = hostile_bridge()
    async with asgi_client(bridge) as http:

        async def one(n: int) -> httpx.Response:
            if n % 3 == 0:
                return await http.post(EVENTS, json=product_view(f"e-{n}"))
            if n % 3 == 1:
                return await http.post(EVENTS, content=b"{", headers={"Content-Type": JSON})
            return await http.post(EVENTS, json={}, headers={"Authorization": "Bearer x"})

        with capture_logs() as logs:
            answers = await asyncio.gather(*(one(n) for n in range(300)))
        # Then every request is answered, none with a 5xx, each as it deserves
        statuses = [a.status_code for a in answers]
        assert statuses.count(202) == statuses.count(400) == statuses.count(401) == 100
        # And every good event was handed on once, the bridge still answers and counted all
        assert len(bridge.dispatcher.dispatched) == 100
        assert (await http.get("/healthz")).status_code == 200
        stats = (await http.get("/stats")).json()
        assert (stats["events"], stats["malformed"], stats["unauthorized"]) == (100, 100, 100)
        _assert_clean(repr(logs))
