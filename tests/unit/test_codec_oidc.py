"""The codec server accepts the Temporal UI's SSO access tokens (OIDC JWTs): signed by a key of
the issuer's JWKS, which a real HTTP server on 127.0.0.1 publishes (tests/oidc_helpers.py), and
carrying the expected issuer, audience, lifetime and group."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from google.protobuf.json_format import MessageToDict
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload

from ct_insider import oidc
from ct_insider.codec import EncryptionCodec
from ct_insider.codec_keys import parse_key_ring
from ct_insider.config import CodecServerSettings
from ct_insider.logging import configure_logging, get_logger
from ct_insider.oidc import OidcPolicy, OidcVerifier
from starters.codec_app import create_codec_app
from tests.oidc_helpers import AUDIENCE, GROUP, KEY_2, STRANGER, Issuer, jwk, serving_issuer

FIXED = "codec-test-token-0123456789"
RING = parse_key_ring("k1:" + base64.b64encode(b"k" * 32).decode())
CLEAR = {"email": "jane.doe@example.com"}


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with serving_issuer() as state:
        yield state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(issuer: Issuer, clock: Clock) -> OidcVerifier:
    settings = CodecServerSettings(
        _env_file=None,
        token=SecretStr(FIXED),
        oidc_issuer=issuer.url,
        oidc_audience=AUDIENCE,
        oidc_required_claim=f"groups={GROUP}",
    )
    policy = OidcPolicy.from_settings(settings)
    assert policy is not None
    return OidcVerifier(policy, refresh_cooldown=30.0, clock=clock)


@pytest_asyncio.fixture
async def http(verifier: OidcVerifier) -> AsyncIterator[httpx.AsyncClient]:
    app = create_codec_app(EncryptionCodec(RING), SecretStr(FIXED), [], verifier)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as client:
        yield client


async def _sealed() -> dict[str, object]:
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(CLEAR).encode())
    [sealed] = await EncryptionCodec(RING).encode([plain])
    return MessageToDict(sealed)


async def _decode(http: httpx.AsyncClient, bearer: str) -> httpx.Response:
    return await http.post(
        "/decode",
        json={"payloads": [await _sealed()]},
        headers={"Authorization": f"Bearer {bearer}", "X-Namespace": "default"},
    )


def _clear(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return json.loads(base64.b64decode(answer.json()["payloads"][0]["data"]))


async def test_a_valid_sso_token_decodes_with_keys_discovered_from_the_issuer(
    http: httpx.AsyncClient, issuer: Issuer
) -> None:
    # Given an issuer whose discovery document points at its JWKS
    # When the UI forwards a signed-in operator's access token
    answer = await _decode(http, issuer.sign())
    # Then the payload comes back decrypted, the keys found through discovery
    assert _clear(answer) == CLEAR
    assert issuer.requests == ["/.well-known/openid-configuration", "/jwks"]


async def test_keys_are_cached_not_fetched_per_request(
    http: httpx.AsyncClient, issuer: Issuer, verifier: OidcVerifier
) -> None:
    for _ in range(3):
        assert _clear(await _decode(http, issuer.sign())) == CLEAR
    assert verifier.fetches == 1
    assert issuer.requests.count("/jwks") == 1


def _alg_none(issuer: Issuer) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": "key-1"}
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 300}
    parts = [
        base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=") for p in (header, claims)
    ]
    return b".".join(parts).decode() + "."


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda i: i.sign(aud="another-app"), "wrong audience"),
        (lambda i: i.sign(iss="https://evil.example/"), "wrong issuer"),
        (lambda i: i.sign(exp=int(time.time()) - 120), "token expired"),
        (lambda i: i.sign(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda i: i.sign(key=STRANGER), "bad signature"),
        (lambda i: i.sign(groups=["everyone"]), f"lacks groups={GROUP}"),
        (lambda i: i.sign(groups="everyone"), f"lacks groups={GROUP}"),
        (lambda i: i.sign(exp=None), "no 'exp' claim"),
        (_alg_none, "algorithm 'none' is not accepted"),
        (lambda i: "not-a-jwt-but-long-enough", "not a JWT"),
    ],
    ids=[
        "wrong-audience",
        "wrong-issuer",
        "expired",
        "not-yet-valid",
        "other-key",
        "missing-group",
        "group-claim-a-different-string",
        "no-exp",
        "alg-none",
        "garbage",
    ],
)
async def test_a_token_that_does_not_pass_is_401_with_a_reason_and_not_echoed(
    http: httpx.AsyncClient, issuer: Issuer, make_token: Any, reason: str
) -> None:
    token = make_token(issuer)
    answer = await _decode(http, token)
    assert answer.status_code == 401
    assert reason in answer.json()["error"]
    assert token not in answer.text
    assert "jane" not in answer.text


async def test_a_string_claim_equal_to_the_required_value_passes(
    http: httpx.AsyncClient, issuer: Issuer
) -> None:
    assert _clear(await _decode(http, issuer.sign(groups=GROUP))) == CLEAR


async def test_the_fixed_token_still_works_without_asking_the_issuer(
    http: httpx.AsyncClient, issuer: Issuer
) -> None:
    assert _clear(await _decode(http, FIXED)) == CLEAR
    assert issuer.requests == []
    missing = await http.post("/decode", json={"payloads": []})
    assert missing.status_code == 401


async def test_a_rotated_key_is_picked_up_and_unknown_kids_do_not_refetch_every_time(
    http: httpx.AsyncClient, issuer: Issuer, verifier: OidcVerifier, clock: Clock
) -> None:
    # Given the server has cached the issuer's JWKS with key-1
    assert _clear(await _decode(http, issuer.sign())) == CLEAR
    # When the issuer adds key-2 and a token signed with it arrives after the cooldown
    issuer.keys.append(jwk(KEY_2, "key-2"))
    clock.now += 31
    rotated = issuer.sign(key=KEY_2, kid="key-2")
    # Then the unknown kid makes the server fetch the JWKS again, and key-2 verifies
    assert _clear(await _decode(http, rotated)) == CLEAR
    assert verifier.fetches == 2
    # And made-up kids within the cooldown are refused without another fetch
    for kid in ("made-up-1", "made-up-2"):
        answer = await _decode(http, issuer.sign(kid=kid))
        assert answer.status_code == 401
        assert "unknown key" in answer.json()["error"]
    assert verifier.fetches == 2
    assert issuer.requests.count("/jwks") == 2


async def test_issuer_unreachable_is_503_not_retried_per_request_and_cached_keys_survive(
    http: httpx.AsyncClient, issuer: Issuer, clock: Clock
) -> None:
    # Given the issuer answers 500 before anything is cached
    issuer.status = 500
    # Then the server cannot tell: 503, not 401
    assert (await _decode(http, issuer.sign())).status_code == 503
    assert issuer.requests == ["/.well-known/openid-configuration"]
    # And further requests within the cooldown do not hammer the issuer
    assert (await _decode(http, issuer.sign())).status_code == 503
    assert len(issuer.requests) == 1
    # When it recovers, the token passes after the cooldown
    issuer.status = 200
    clock.now += 31
    assert _clear(await _decode(http, issuer.sign())) == CLEAR
    # And when the cached keys are due for a refresh that fails, a known key still works
    issuer.status = 500
    clock.now += 3601
    before = len(issuer.requests)
    assert _clear(await _decode(http, issuer.sign())) == CLEAR
    assert issuer.requests[before:] == ["/jwks"]  # the failed refresh happened
    # ... while a key the server never saw cannot be checked: 503
    clock.now += 31
    assert (await _decode(http, issuer.sign(key=KEY_2, kid="key-2"))).status_code == 503


async def test_a_jwk_unfit_for_the_tokens_algorithm_is_401_not_a_crash(
    http: httpx.AsyncClient, issuer: Issuer
) -> None:
    # A symmetric key published under the token's kid must not verify an RS256 token
    issuer.keys = [{"kty": "oct", "k": "c2VjcmV0", "kid": "key-1"}]
    answer = await _decode(http, issuer.sign())
    assert answer.status_code == 401
    assert "invalid token" in answer.json()["error"]


async def test_an_explicit_jwks_url_skips_discovery(issuer: Issuer) -> None:
    policy = OidcPolicy(
        issuer=issuer.url, audience=AUDIENCE, jwks_url=issuer.url + "jwks", algorithms=("RS256",)
    )
    claims = await OidcVerifier(policy).verify(issuer.sign())
    assert claims["sub"] == "user-42"
    assert issuer.requests == ["/jwks"]


async def test_an_accepted_subject_is_logged_at_debug_never_the_token(
    issuer: Issuer,
    verifier: OidcVerifier,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_logging("DEBUG", json=True)
    # The module's logger was bound at import, under the level configured then.
    monkeypatch.setattr(oidc, "log", get_logger(oidc.__name__))
    try:
        token = issuer.sign()
        await verifier.verify(token)
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    finally:
        configure_logging("INFO", json=True)
    accepted = [line for line in lines if line["event"] == "sso token accepted"]
    assert [(line["level"], line["subject"]) for line in accepted] == [("debug", "user-42")]
    assert all(token not in json.dumps(line) for line in lines)


def test_settings_for_sso() -> None:
    # OIDC alone is enough authentication; the fixed token is optional then.
    sso = CodecServerSettings(
        _env_file=None, oidc_issuer="https://login.example.com/", oidc_audience=AUDIENCE
    )
    assert sso.token is None
    assert sso.oidc_algorithms == "RS256,ES256"
    with pytest.raises(ValidationError, match="go together"):
        CodecServerSettings(_env_file=None, token=SecretStr(FIXED), oidc_issuer="https://a/")
    with pytest.raises(ValidationError, match="needs CODEC_SERVER_OIDC_ISSUER"):
        CodecServerSettings(_env_file=None, token=SecretStr(FIXED), oidc_jwks_url="https://a/k")
    with pytest.raises(ValidationError, match="use some of"):
        CodecServerSettings(_env_file=None, token=SecretStr(FIXED), oidc_algorithms="HS256")
    with pytest.raises(ValidationError, match="use some of"):
        CodecServerSettings(_env_file=None, token=SecretStr(FIXED), oidc_algorithms="none")
    with pytest.raises(ValidationError, match="name=value"):
        CodecServerSettings(_env_file=None, token=SecretStr(FIXED), oidc_required_claim="groups")
    with pytest.raises(ValidationError, match="contradicts"):
        CodecServerSettings(
            _env_file=None, insecure_no_auth=True, oidc_issuer="https://a/", oidc_audience="b"
        )
