"""The codec server's HTTP API (FastAPI), apart from the command so that `ct-insider`'s
other commands do not import FastAPI.

- POST /decode and POST /encode: `{"payloads": [<protobuf-JSON Payload>, ...]}` both ways,
  header `X-Namespace` (logged); need `Authorization: Bearer <CODEC_SERVER_TOKEN>` or, with
  CODEC_SERVER_OIDC_ISSUER, the bearer the Temporal UI forwards: the user's SSO access token
  (ct_insider/oidc.py). A token that does not pass: 401; the issuer's keys unreachable: 503.
- GET /healthz
CORS answers the Temporal UI's origins (CODEC_SERVER_CORS_ORIGINS); a preflight needs no token.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from ct_insider.codec import CodecError, EncryptionCodec
from ct_insider.logging import get_logger
from ct_insider.oidc import KeysUnavailable, OidcVerifier, TokenRejected

log = get_logger(__name__)

MAX_PAYLOADS = 10_000


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def _unauthorized(reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


async def _refusal(
    request: Request, expected: bytes | None, oidc: OidcVerifier | None
) -> JSONResponse | None:
    """None when the request may proceed; else the answer (never echoing the token)."""
    presented = _bearer(request)
    if expected is not None and hmac.compare_digest(presented.encode(), expected):
        return None
    if oidc is None or not presented:
        return _unauthorized("missing or wrong bearer token")
    try:
        await oidc.verify(presented)
    except TokenRejected as exc:
        return _unauthorized(f"access token rejected: {exc}")
    except KeysUnavailable as exc:
        log.warning("sso keys unavailable", reason=str(exc))
        return JSONResponse({"error": "cannot check the access token now"}, status_code=503)
    return None


def _payloads(body: Any) -> list[Payload]:
    if not isinstance(body, dict) or not isinstance(body.get("payloads"), list):
        raise ValueError('expected {"payloads": [...]}')
    if len(body["payloads"]) > MAX_PAYLOADS:
        raise ValueError(f"at most {MAX_PAYLOADS} payloads per request")
    try:
        return [ParseDict(item, Payload()) for item in body["payloads"]]
    except (ParseError, TypeError) as exc:
        raise ValueError(f"a payload is not protobuf JSON: {exc}") from None


def create_codec_app(
    codec: EncryptionCodec,
    token: SecretStr | None,
    origins: list[str],
    oidc: OidcVerifier | None = None,
) -> FastAPI:
    """`token` and `oidc` None: no authentication (CODEC_SERVER_INSECURE_NO_AUTH, loopback
    only). Either or both: a request presents the token or an SSO access token `oidc` accepts."""
    app = FastAPI(title="ct-insider codec server", version="1")
    expected = token.get_secret_value().encode() if token is not None else None

    async def convert(request: Request, decode: bool) -> JSONResponse:
        if expected is not None or oidc is not None:
            refusal = await _refusal(request, expected, oidc)
            if refusal is not None:
                return refusal
        try:
            payloads = _payloads(await request.json())
        except ValueError as exc:  # includes a body that is not JSON
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            converted = await (codec.decode(payloads) if decode else codec.encode(payloads))
        except CodecError as exc:  # names the key id, never the data
            return JSONResponse({"error": str(exc)}, status_code=422)
        log.info(
            "codec request",
            operation="decode" if decode else "encode",
            namespace=request.headers.get("x-namespace", ""),
            payloads=len(payloads),
        )
        return JSONResponse({"payloads": [MessageToDict(p) for p in converted]})

    @app.post("/decode")
    async def decode(request: Request) -> JSONResponse:
        return await convert(request, decode=True)

    @app.post("/encode")
    async def encode(request: Request) -> JSONResponse:
        return await convert(request, decode=False)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "encrypting_key_id": codec.current_key_id}

    # Outermost, so preflights are answered before the token check and 401s carry CORS
    # headers the browser needs to show them.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["POST", "GET", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
        max_age=600,
    )
    return app
