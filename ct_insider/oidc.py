"""Checks single-sign-on access tokens (OIDC JWTs) that the Temporal UI forwards to the codec
server: signature against the issuer's published keys (JWKS), `exp`/`nbf`, `iss`, `aud` and an
optional required claim such as `groups=temporal-operators`.

The JWKS is fetched (with a short timeout) once, then again only when a token names a key id we
do not know (the issuer rotated its keys) or the copy is older than `max_age`; at most once per
`refresh_cooldown` either way, so neither a stream of made-up key ids nor an issuer that is down
turns every request into a fetch. A failed refresh keeps the keys we have.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from ct_insider.config import CodecServerSettings
from ct_insider.logging import get_logger

log = get_logger(__name__)

FETCH_TIMEOUT_SECONDS = 3.0
LEEWAY_SECONDS = 30
DISCOVERY_PATH = "/.well-known/openid-configuration"


class TokenRejected(Exception):
    """The token does not prove a signed-in, allowed user. The message is a short reason and
    never contains the token."""


class KeysUnavailable(Exception):
    """The issuer's discovery document or JWKS could not be fetched: we cannot tell."""


@dataclass(frozen=True)
class OidcPolicy:
    issuer: str
    audience: str
    jwks_url: str | None  # None: discovered from the issuer
    algorithms: tuple[str, ...]
    required_claim: tuple[str, str] | None = None

    @classmethod
    def from_settings(cls, settings: CodecServerSettings) -> OidcPolicy | None:
        if settings.oidc_issuer is None or settings.oidc_audience is None:
            return None
        claim = settings.oidc_required_claim
        name, _, value = claim.partition("=") if claim else ("", "", "")
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            algorithms=tuple(settings.oidc_algorithms.split(",")),
            required_claim=(name.strip(), value.strip()) if claim else None,
        )


class OidcVerifier:
    def __init__(
        self,
        policy: OidcPolicy,
        *,
        max_age: float = 3600.0,
        refresh_cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._max_age = max_age
        self._refresh_cooldown = refresh_cooldown
        self._clock = clock
        self._jwks_url = policy.jwks_url
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._fetched_at: float | None = None  # of the keys in use
        self._last_attempt: float | None = None
        self._last_failure: str | None = None  # why the last attempt failed; None: it worked
        self._attempts = 0
        self._lock = asyncio.Lock()
        self.fetches = 0  # successful JWKS downloads, for tests

    async def verify(self, token: str) -> Mapping[str, Any]:
        """The token's claims, or TokenRejected / KeysUnavailable."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRejected("not a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in self.policy.algorithms:
            raise TokenRejected(f"algorithm {str(algorithm)[:16]!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("malformed key id")
        key = await self._key(kid)
        claims = self._decode(token, key, algorithm)
        self._check_required_claim(claims)
        log.debug("sso token accepted", subject=str(claims.get("sub", "")))
        return claims

    def _decode(self, token: str, jwk: dict[str, Any], algorithm: str) -> dict[str, Any]:
        try:
            # A key that names its algorithm binds it; otherwise the token's (already allowed)
            # algorithm must fit the key's type, which PyJWK checks.
            key = jwt.PyJWK(jwk, algorithm=jwk.get("alg") or algorithm)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self.policy.algorithms),
                audience=self.policy.audience,
                issuer=self.policy.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad signature") from None
        except jwt.PyJWTError:  # malformed claims, a key unfit for the algorithm, ...
            raise TokenRejected("invalid token") from None
        return claims

    def _check_required_claim(self, claims: Mapping[str, Any]) -> None:
        if self.policy.required_claim is None:
            return
        name, value = self.policy.required_claim
        present = claims.get(name)
        if present == value or (isinstance(present, list) and value in present):
            return
        raise TokenRejected(f"token lacks {name}={value}")

    async def _key(self, kid: str | None) -> dict[str, Any]:
        if self._refresh_due(kid):
            seen = self._attempts
            async with self._lock:
                if self._attempts == seen:  # else another request refreshed while this one waited
                    await self._refresh()
        key = self._lookup(kid)
        if key is None:
            if self._last_failure is not None:  # the issuer may know it: we cannot tell
                raise KeysUnavailable(self._last_failure)
            raise TokenRejected("signed by an unknown key")
        return key

    def _refresh_due(self, kid: str | None) -> bool:
        now = self._clock()
        if self._last_attempt is not None and now - self._last_attempt < self._refresh_cooldown:
            return False  # at most one fetch per cooldown, whatever tokens arrive
        if self._fetched_at is None or now - self._fetched_at > self._max_age:
            return True
        return self._lookup(kid) is None  # the issuer may have rotated its keys

    def _lookup(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None and len(self._keys) == 1:  # issuers with one key may leave kid out
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        """Replace the cached keys; on failure keep them (a known key still verifies)."""
        self._last_attempt = self._clock()
        self._attempts += 1
        try:
            keys = await self._download()
        except KeysUnavailable as exc:
            self._last_failure = str(exc)
            log.warning("jwks fetch failed", reason=str(exc), cached_keys=len(self._keys))
            return
        self._keys = keys
        self._fetched_at = self._last_attempt
        self._last_failure = None
        self.fetches += 1
        log.debug("jwks fetched", keys=len(keys), url=self._jwks_url)

    async def _download(self) -> dict[str | None, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS) as http:
            if self._jwks_url is None:
                discovery = await _get_json(http, _discovery_url(self.policy.issuer))
                jwks_uri = discovery.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise KeysUnavailable("the issuer's discovery document has no jwks_uri")
                self._jwks_url = jwks_uri
            jwks = await _get_json(http, self._jwks_url)
        keys = jwks.get("keys")
        if not isinstance(keys, list):
            raise KeysUnavailable("the JWKS has no keys list")
        return {
            key.get("kid"): key for key in keys if isinstance(key, dict) and key.get("use") != "enc"
        }


def _discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        answer = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise KeysUnavailable(f"{url}: {type(exc).__name__}") from None
    if answer.status_code != 200:
        raise KeysUnavailable(f"{url}: HTTP {answer.status_code}")
    try:
        body = answer.json()
    except ValueError:
        raise KeysUnavailable(f"{url}: not JSON") from None
    if not isinstance(body, dict):
        raise KeysUnavailable(f"{url}: not a JSON object")
    return body
