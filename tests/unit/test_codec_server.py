"""The codec server's HTTP contract (Temporal's remote codec protocol), in process."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from google.protobuf.json_format import MessageToDict
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload

from ct_insider.codec import EncryptionCodec
from ct_insider.codec_keys import parse_key_ring
from ct_insider.config import CodecServerSettings
from starters.codec_app import create_codec_app

TOKEN = "codec-test-token-0123456789"
UI = "http://localhost:8233"
RING = parse_key_ring("k1:" + base64.b64encode(b"k" * 32).decode())
CLEAR = {"email": "jane.doe@example.com"}


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = create_codec_app(EncryptionCodec(RING), SecretStr(TOKEN), [UI])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        yield client


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Namespace": "default"}


async def _sealed() -> dict[str, object]:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(CLEAR).encode())
    [sealed] = await EncryptionCodec(RING).encode([plain])
    return MessageToDict(sealed)


async def test_decode_with_the_token_gives_the_clear_payload(http: httpx.AsyncClient) -> None:
    answer = await http.post("/decode", json={"payloads": [await _sealed()]}, headers=_auth())
    assert answer.status_code == 200
    [payload] = answer.json()["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(payload["data"])) == CLEAR


async def test_encode_then_decode_round_trips(http: httpx.AsyncClient) -> None:
    plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": "e30="}
    encoded = await http.post("/encode", json={"payloads": [plain]}, headers=_auth())
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    decoded = await http.post("/decode", json={"payloads": [sealed]}, headers=_auth())
    assert decoded.json()["payloads"] == [plain]


@pytest.mark.parametrize("headers", [{}, _auth("wrong-token-0123456789"), {"Authorization": TOKEN}])
async def test_without_the_right_token_401(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    answer = await http.post("/decode", json={"payloads": [await _sealed()]}, headers=headers)
    assert answer.status_code == 401
    assert "jane" not in answer.text


async def test_cors_preflight_from_the_ui_is_answered_without_a_token(
    http: httpx.AsyncClient,
) -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    allowed = await http.options("/decode", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    other = await http.options("/decode", headers={**preflight, "Origin": "https://evil.example"})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # A 401 carries the CORS header too, so the UI can show why.
    refused = await http.post("/decode", json={"payloads": []}, headers={"Origin": UI})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == UI


async def test_bad_requests_are_clear_errors(http: httpx.AsyncClient) -> None:
    not_json = await http.post("/decode", content=b"{", headers=_auth())
    assert not_json.status_code == 400
    wrong_shape = await http.post("/decode", json={"payload": []}, headers=_auth())
    assert wrong_shape.status_code == 400
    assert "payloads" in wrong_shape.json()["error"]
    other_ring = EncryptionCodec(parse_key_ring("old:" + base64.b64encode(b"o" * 32).decode()))
    [sealed] = await other_ring.encode([Payload(data=b"{}")])
    unknown = await http.post(
        "/decode", json={"payloads": [MessageToDict(sealed)]}, headers=_auth()
    )
    assert unknown.status_code == 422
    assert "'old'" in unknown.json()["error"]
    [mine] = await EncryptionCodec(RING).encode([Payload(data=b"{}")])
    truncated = MessageToDict(Payload(metadata=dict(mine.metadata), data=mine.data[:5]))
    short = await http.post("/decode", json={"payloads": [truncated]}, headers=_auth())
    assert short.status_code == 422
    assert "truncated" in short.json()["error"]


async def test_health(http: httpx.AsyncClient) -> None:
    answer = await http.get("/healthz")
    assert answer.json() == {"status": "ok", "encrypting_key_id": "k1"}


async def test_without_a_token_configured_it_answers_anyone() -> None:
    # CODEC_SERVER_INSECURE_NO_AUTH: the local dev stack, whose UI has no sign-in
    app = create_codec_app(EncryptionCodec(RING), None, [UI])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        answer = await client.post("/decode", json={"payloads": [await _sealed()]})
    assert answer.status_code == 200
    assert json.loads(base64.b64decode(answer.json()["payloads"][0]["data"])) == CLEAR


def test_settings_need_a_token_unless_no_auth_is_asked_for_on_loopback() -> None:
    with pytest.raises(ValidationError, match="CODEC_SERVER_TOKEN is required"):
        CodecServerSettings(_env_file=None)
    assert CodecServerSettings(_env_file=None, insecure_no_auth=True).token is None
    with pytest.raises(ValidationError, match="needs a loopback CODEC_SERVER_HOST"):
        CodecServerSettings(_env_file=None, insecure_no_auth=True, host="0.0.0.0")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        CodecServerSettings(_env_file=None, token=SecretStr("short"))
    settings = CodecServerSettings(
        _env_file=None, token=SecretStr(TOKEN), cors_origins="http://a:8233/, https://b"
    )
    assert settings.origins == ["http://a:8233", "https://b"]


def test_the_codec_servers_lines_are_json_uvicorns_included(tmp_path: Path) -> None:
    # Given the codec server's port already taken (so uvicorn itself logs an error)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEC_SERVER_")}
        env.update(CODEC_SERVER_TOKEN=TOKEN, CODEC_SERVER_PORT=str(port))
        # When `ct-insider codec-server` starts on a server (stderr not a terminal)
        result = subprocess.run(
            [sys.executable, "-m", "starters.cli", "codec-server"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    # Then every line, ours and uvicorn's, is one JSON object
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert any(line["event"] == "codec server" for line in lines)
    [refused] = [line for line in lines if line.get("logger", "").startswith("uvicorn")]
    assert refused["level"] == "error"
    assert "address already in use" in refused["event"]
    assert result.stdout == ""  # stdout is for command output (--json) only
