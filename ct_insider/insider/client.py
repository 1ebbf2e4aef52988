"""Insider HTTP client: UCD upsert/profile/delete/identity and Catalog ingest/update/locales.

Insider answers 200 even when records fail validation; the per-record errors are parsed
into RecordFailure / CatalogInvalidDetail so no refusal goes unreported. User refusals
repeat the refused values (an email, a phone number): they are masked where they are
parsed, before they reach a report, a log line or the dead-letter store.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from typing import Any

import httpx

from ct_insider.config import InsiderSettings
from ct_insider.http import HttpApiClient
from ct_insider.insider.batching import Chunk, chunk_serialized
from ct_insider.insider.errors import (
    InsiderBadRequest,
    InsiderConfigurationError,
    InsiderError,
    InsiderRateLimited,
    InsiderUnavailable,
)
from ct_insider.insider.models import (
    CatalogInvalidDetail,
    CatalogLocale,
    CatalogResult,
    RecordFailure,
    UpsertResult,
    User,
)
from ct_insider.insider.quota import ProfileQuota
from ct_insider.logging import mask_pii
from ct_insider.retry import (
    TRANSIENT_EXCEPTIONS,
    UNSENT_EXCEPTIONS,
    Backoff,
    RetryableStatus,
    parse_retry_after,
    with_backoff,
)
from ct_insider.transport import api_http_client

MAX_USERS_PER_REQUEST = 1_000
MAX_CATALOG_RECORDS_PER_REQUEST = 10_000
# Insider's documented limit is "5 MB"; its error text says 5,000,000 bytes. The safer reading.
MAX_BODY_BYTES = 5_000_000
MAX_CATALOG_RECORD_BYTES = 512 * 1024

_USER_ERROR_KEY = re.compile(r"^users\.(\d+)\.")
# Profile reads settle doubts while a delivery waits: retried sooner than writes (the
# quota paces them anyway; a 429's Retry-After still wins).
READ_BACKOFF = Backoff(attempts=6, base_seconds=0.1, max_seconds=5.0)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class MinimumInterval:
    """Spaces requests so one process stays within a requests-per-minute budget."""

    def __init__(self, per_minute: int) -> None:
        self._interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if now < self._next:
                await asyncio.sleep(self._next - now)
                now = self._next
            self._next = now + self._interval


class InsiderClient(HttpApiClient):
    def __init__(
        self,
        settings: InsiderSettings,
        *,
        http: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(
            http
            or api_http_client(
                httpx.Timeout(
                    settings.request_timeout_seconds,
                    connect=min(10.0, settings.request_timeout_seconds),
                ),
                system="insider",
            ),
            owns_http=http is None,
        )
        self._ucd = settings.unification_url.rstrip("/")
        self._catalog = settings.catalog_url.rstrip("/")
        self._ucd_headers = {
            "X-PARTNER-NAME": settings.partner_name,
            "X-REQUEST-TOKEN": settings.api_key.get_secret_value(),
            "Content-Type": "application/json",
        }
        self._catalog_headers = {
            **self._ucd_headers,
            "X-REQUEST-TOKEN": settings.catalog_api_key.get_secret_value(),
        }
        self._backoff = backoff or Backoff(attempts=5, base_seconds=0.5, max_seconds=30.0)
        self._catalog_pacing = MinimumInterval(settings.catalog_requests_per_minute)
        self._profile_quota = ProfileQuota(settings.profile_units_per_minute)
        self.profile_reads = 0  # made by this client: reads are for settling doubts only
        # Settling a request that may have been stored waits this long before reading.
        self.settle_grace_seconds = settings.settle_grace_seconds

    # -- transport ---------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        pacing: MinimumInterval | ProfileQuota | None = None,
        *,
        repeatable: bool = True,
        backoff: Backoff | None = None,
    ) -> httpx.Response:
        """Send with retries. A non-`repeatable` request (one whose repetition would duplicate
        events) is retried only where it surely did not arrive: 429 and connection failures.
        A 5xx or a lost answer is raised, for the caller to verify before sending again."""

        async def attempt() -> httpx.Response:
            if pacing is not None:
                await pacing.wait()
            response = await self._http.request(method, url, content=body, headers=headers)
            if response.status_code == 429 or (repeatable and response.status_code >= 500):
                raise RetryableStatus(response, parse_retry_after(response))
            return response

        transient = TRANSIENT_EXCEPTIONS if repeatable else UNSENT_EXCEPTIONS
        try:
            response = await with_backoff(attempt, backoff or self._backoff, transient)
        except RetryableStatus as exc:
            raise _error_for(exc.response) from None
        except TRANSIENT_EXCEPTIONS as exc:
            raise InsiderUnavailable(
                0,
                f"transport error: {type(exc).__name__}",
                maybe_stored=not isinstance(exc, UNSENT_EXCEPTIONS),
            ) from exc
        if response.status_code >= 400:
            raise _error_for(response)
        return response

    # -- UCD ---------------------------------------------------------------------------

    async def upsert_users(
        self,
        users: Sequence[User],
        *,
        skip_hook: bool = False,
        repeatable: bool = True,
        max_users: int = MAX_USERS_PER_REQUEST,
    ) -> UpsertResult:
        """Upsert users in requests of at most `max_users` (≤ 1,000) users and 5 MB.

        Failure indices refer to positions in `users`. Pass `repeatable=False` when the
        users carry events: Insider stores every event it receives, so an ambiguous
        failure must be verified, not blindly retried.
        """
        head = b'{"skip_hook":' + (b"true" if skip_hook else b"false") + b',"users":['
        tail = b"]}"
        parts = [_dumps(user.to_json_dict()) for user in users]
        result = UpsertResult()
        try:
            await self._upsert_chunks(parts, head, tail, result, repeatable, max_users)
        except InsiderError as exc:
            if result.requests and not exc.maybe_stored:
                # Earlier requests of this call were stored: the caller must not take the
                # whole call for unsent.
                exc.maybe_stored = True
            raise
        return result

    async def _upsert_chunks(
        self,
        parts: list[bytes],
        head: bytes,
        tail: bytes,
        result: UpsertResult,
        repeatable: bool,
        max_users: int,
    ) -> None:
        for chunk in chunk_serialized(
            parts,
            max_records=min(max_users, MAX_USERS_PER_REQUEST),
            max_bytes=MAX_BODY_BYTES,
            envelope_bytes=len(head) + len(tail),
        ):
            if isinstance(chunk, int):
                result.failures.append(
                    RecordFailure(
                        index=chunk,
                        reasons=[f"user record exceeds the {MAX_BODY_BYTES}-byte request limit"],
                    )
                )
                continue
            body = head + b",".join(chunk.parts) + tail
            response = await self._send(
                "POST",
                f"{self._ucd}/api/user/v1/upsert",
                self._ucd_headers,
                body,
                repeatable=repeatable,
            )
            result.requests += 1
            _merge_upsert_response(result, chunk, response.json())

    async def read_profile(
        self,
        identifiers: dict[str, Any],
        attributes: Sequence[str] = ("*",),
        events: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """One user's profile, or None when Insider knows no such user. Reads share the
        account's profile quota (units per minute): they are paced by the cost Insider
        reports for each one."""
        payload: dict[str, Any] = {
            "identifiers": identifiers,
            "attributes": list(attributes),
            "quota": True,
        }
        if events is not None:
            payload["events"] = events
        self.profile_reads += 1
        try:
            response = await self._send(
                "POST",
                f"{self._ucd}/api/user/v1/profile",
                self._ucd_headers,
                _dumps(payload),
                self._profile_quota,
                backoff=READ_BACKOFF,
            )
        except InsiderError as exc:
            if exc.status_code == 404:
                return None
            raise
        profile: dict[str, Any] = response.json()
        self._profile_quota.settle((profile.get("quota") or {}).get("cost"))
        return profile

    async def delete_user(self, identifiers: dict[str, Any]) -> None:
        await self._send(
            "POST",
            f"{self._ucd}/api/user/v1/delete",
            self._ucd_headers,
            _dumps({"identifiers": identifiers}),
        )

    async def anonymize_user(self, identifiers: dict[str, Any]) -> None:
        """Erase a user's personal data but keep the anonymous behaviour (GDPR anonymization)."""
        await self._send(
            "POST",
            f"{self._ucd}/api/user/v1/anonymize",
            self._ucd_headers,
            _dumps({"identifiers": identifiers}),
        )

    async def update_identifier(self, old: dict[str, str], new: dict[str, str]) -> None:
        await self._send(
            "PATCH",
            f"{self._ucd}/api/user/v1/identity",
            self._ucd_headers,
            _dumps({"old_identifier": old, "new_identifier": new}),
        )

    # -- Catalog -----------------------------------------------------------------------

    async def create_locales(self, locales: Sequence[CatalogLocale]) -> int:
        """Register catalog locales (idempotent); returns how many were new to Insider."""
        response = await self._send(
            "POST",
            f"{self._catalog}/v2/locales/batch",
            self._catalog_headers,
            _dumps([locale.to_json_dict() for locale in locales]),
            self._catalog_pacing,
        )
        body = response.json() if response.content else {}
        return int(body.get("created_locale_count") or 0) if isinstance(body, dict) else 0

    async def catalog_ingest(self, items: Sequence[dict[str, Any]]) -> CatalogResult:
        """Create or overwrite items (keyed by item_id + locale)."""
        return await self._catalog_write("/v2/ingest", items)

    async def catalog_update(self, items: Sequence[dict[str, Any]]) -> CatalogResult:
        """Partially update existing items (price/stock changes)."""
        return await self._catalog_write("/v2/update", items)

    async def _catalog_write(self, path: str, items: Sequence[dict[str, Any]]) -> CatalogResult:
        parts = [_dumps(item) for item in items]
        result = CatalogResult()
        for index, part in enumerate(parts):
            if len(part) > MAX_CATALOG_RECORD_BYTES:
                result.invalid += 1
                result.details.append(
                    CatalogInvalidDetail(
                        field="record",
                        message=f"record exceeds {MAX_CATALOG_RECORD_BYTES} bytes",
                        document_ids=[str(items[index].get("item_id"))],
                    )
                )
        fitting = [p for p in parts if len(p) <= MAX_CATALOG_RECORD_BYTES]
        for chunk in chunk_serialized(
            fitting,
            max_records=MAX_CATALOG_RECORDS_PER_REQUEST,
            max_bytes=MAX_BODY_BYTES,
            envelope_bytes=2,
        ):
            assert isinstance(chunk, Chunk)  # every record fits: checked above
            body = b"[" + b",".join(chunk.parts) + b"]"
            response = await self._send(
                "POST", f"{self._catalog}{path}", self._catalog_headers, body, self._catalog_pacing
            )
            result.requests += 1
            _merge_catalog_response(result, response.json())
        return result


def _error_for(response: httpx.Response) -> InsiderError:
    try:
        body = response.json()
        message = (
            str(body.get("error") or body.get("message") or body)
            if isinstance(body, dict)
            else str(body)
        )
    except ValueError:
        message = response.text[:200] or response.reason_phrase
    # Insider's refusals repeat the values they refuse ("invalid email: a@b"): masked here,
    # once, so no report, log line or dead letter downstream ever holds them.
    message = mask_pii(message)
    status = response.status_code
    if status == 429:
        return InsiderRateLimited(status, message, parse_retry_after(response))
    if status in (401, 403):
        return InsiderConfigurationError(status, message)
    if status >= 500:
        return InsiderUnavailable(status, message, maybe_stored=True)
    if status == 400:
        return InsiderBadRequest(status, message)
    return InsiderError(status, message)


def _merge_upsert_response(result: UpsertResult, chunk: Chunk, body: dict[str, Any]) -> None:
    data = body.get("data") or {}
    successful = data.get("successful") or {}
    result.successful += int(successful.get("count") or 0)
    errors = (data.get("fail") or {}).get("errors") or {}
    reasons_by_position: dict[int, list[str]] = {}
    fields_by_position: dict[int, list[str]] = {}
    for key, messages in errors.items():
        match = _USER_ERROR_KEY.match(key)
        if match is None:
            continue
        position = int(match.group(1))
        texts = messages if isinstance(messages, list) else [messages]
        reasons_by_position.setdefault(position, []).extend(mask_pii(str(t)) for t in texts)
        fields_by_position.setdefault(position, []).append(key[match.end() :])
    for position, reasons in sorted(reasons_by_position.items()):
        if position < len(chunk.indices):
            result.failures.append(
                RecordFailure(
                    index=chunk.indices[position],
                    reasons=reasons,
                    fields=fields_by_position[position],
                )
            )


def _merge_catalog_response(result: CatalogResult, body: dict[str, Any]) -> None:
    message = body.get("message") or {}
    result.valid += int((message.get("valid") or {}).get("count") or 0)
    invalid = message.get("invalid") or {}
    result.invalid += int(invalid.get("count") or 0)
    for detail in invalid.get("details") or []:
        result.details.append(
            CatalogInvalidDetail(
                field=str(detail.get("field", "")),
                message=str(detail.get("message", "")),
                document_ids=[str(d) for d in detail.get("document_ids") or []],
            )
        )
