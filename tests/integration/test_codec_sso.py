"""`ct-insider codec-server` as operators run it behind the Temporal UI's single sign-on: only
CODEC_SERVER_OIDC_* set (no fixed token), the UI forwarding each user's access token."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from temporalio.api.common.v1 import Payload

from ct_insider.codec import EncryptionCodec
from ct_insider.config import PayloadCodecSettings
from emulators.process import ManagedProcess, ct_insider_command, free_port
from tests.oidc_helpers import AUDIENCE, GROUP, Issuer, serving_issuer

pytestmark = pytest.mark.integration

CLEAR = {"email": "jane.doe@example.com"}


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with serving_issuer() as state:
        yield state


@pytest.fixture
def codec_url(issuer: Issuer, tmp_path: Path) -> Iterator[str]:
    assert os.environ["TEMPORAL_CODEC_KEYS"]  # the tests' key ring, tests/conftest.py
    assert "CODEC_SERVER_TOKEN" not in os.environ  # no fixed token: SSO alone authenticates
    port = free_port()
    env = {
        "CODEC_SERVER_PORT": str(port),
        "CODEC_SERVER_OIDC_ISSUER": issuer.url,
        "CODEC_SERVER_OIDC_AUDIENCE": AUDIENCE,
        "CODEC_SERVER_OIDC_REQUIRED_CLAIM": f"groups={GROUP}",
    }
    process = ManagedProcess(
        "codec server",
        ct_insider_command("--log-level", "DEBUG", "codec-server"),
        health_url=f"http://127.0.0.1:{port}/healthz",
        env=env,
        log_path=tmp_path / "codec-server.log",
    )
    with process:
        yield f"http://127.0.0.1:{port}"


async def _decode(url: str, bearer: str) -> httpx.Response:
    ring = PayloadCodecSettings().key_ring()
    assert ring is not None
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(CLEAR).encode())
    [sealed] = await EncryptionCodec(ring).encode([plain])
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{url}/decode",
            json={"payloads": [MessageToDict(sealed)]},
            headers={"Authorization": f"Bearer {bearer}", "X-Namespace": "default"},
        )


async def test_the_ui_forwarding_an_operators_sso_token_gets_clear_payloads(
    issuer: Issuer, codec_url: str, tmp_path: Path
) -> None:
    # Given the codec server runs with only the issuer configured
    # When the Temporal UI forwards an operator's access token
    token = issuer.sign()
    answer = await _decode(codec_url, token)
    # Then the payload comes back in clear, checked against the keys the issuer publishes
    assert answer.status_code == 200, answer.text
    assert json.loads(base64.b64decode(answer.json()["payloads"][0]["data"])) == CLEAR
    assert issuer.requests == ["/.well-known/openid-configuration", "/jwks"]
    # And a user outside the group, or any other bearer, is refused
    outsider = await _decode(codec_url, issuer.sign(groups=["everyone"]))
    assert outsider.status_code == 401
    assert f"lacks groups={GROUP}" in outsider.json()["error"]
    assert (await _decode(codec_url, "some-guessed-token-0123456789")).status_code == 401
    # And the log names the subject at debug, never the token
    log = (tmp_path / "codec-server.log").read_text()
    assert "user-42" in log
    assert token not in log
