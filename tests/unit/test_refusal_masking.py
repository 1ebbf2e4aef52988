"""Insider's refusals repeat the values they refuse: the client masks them where it parses
them, so no run report, log line, journey refusal or dead letter holds a raw email or
phone number (Insider stood in for by respx, answering as Insider does)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderBadRequest
from ct_insider.logging import pii_fingerprint
from ct_insider.mapping.config import MappingConfig
from ct_insider.sync.customers import send_customer_batch
from ct_insider.sync.rejected import sync_letters
from tests.unit.test_insider_client import FAST, SETTINGS, UCD, mockable_http, users

EMAIL = "jane.doe@example.com"
PHONE = "+491511234567"
CUSTOMER: dict[str, Any] = {
    "id": "c-1",
    "version": 1,
    "email": EMAIL,
    "addresses": [{"country": "DE", "mobile": PHONE}],
    "defaultShippingAddressId": None,
    "createdAt": "2026-01-01T00:00:00.000Z",
    "lastModifiedAt": "2026-01-01T00:00:00.000Z",
}
REFUSAL = {
    "data": {
        "successful": {},
        "fail": {
            "count": 1,
            "errors": {
                "users.0.identifiers.*.regexp(^.+@.+\\..+$)": [
                    f"user has an invalid email: {EMAIL}"
                ],
                "users.0.identifiers.*.regexp(^\\+[1-9]\\d{6,14}$)": [
                    f"user has an invalid phone number: {PHONE}"
                ],
            },
        },
    }
}


def _raw_in(text: str) -> bool:
    return EMAIL in text or PHONE in text or PHONE[1:] in text


@respx.mock
async def test_a_refused_user_is_reported_logged_and_dead_lettered_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given Insider refuses a customer, quoting their email and phone
    respx.post(f"{UCD}/api/user/v1/upsert").mock(return_value=httpx.Response(200, json=REFUSAL))
    async with InsiderClient(SETTINGS, backoff=FAST, http=mockable_http()) as insider:
        # When a backfill batch sends it
        stats = await send_customer_batch(insider, [CUSTOMER], MappingConfig(), skip_hook=True)
    # Then the run report says why, with the values masked
    [rejection] = stats.rejections
    assert rejection.stage == "insider"
    assert f"user has an invalid email: {pii_fingerprint(EMAIL)}" in rejection.reasons
    assert f"user has an invalid phone number: {pii_fingerprint(PHONE)}" in rejection.reasons
    assert not any(_raw_in(reason) for reason in rejection.reasons)
    # and so does the log line, and the dead letter the run writes
    captured = capsys.readouterr()
    logged = captured.out + captured.err
    assert "customer refused by Insider" in logged
    assert pii_fingerprint(EMAIL) in logged
    assert not _raw_in(logged)
    [letter] = sync_letters(
        stats.rejections, resource="customers", run="backfill-x", skip_hook=True, path="backfill"
    )
    assert letter.reasons
    assert not any(_raw_in(reason) for reason in letter.reasons)


@respx.mock
async def test_a_request_refused_whole_is_masked_in_its_error() -> None:
    # Given Insider refuses a whole request, naming a value in its message
    respx.post(f"{UCD}/api/user/v1/upsert").mock(
        return_value=httpx.Response(400, json={"error": f"blocked identifier {EMAIL}"})
    )
    async with InsiderClient(SETTINGS, backoff=FAST, http=mockable_http()) as insider:
        with pytest.raises(InsiderBadRequest) as raised:
            await insider.upsert_users(users(1))
    # Then the error (what journeys dead-letter and log) carries the fingerprint only
    assert EMAIL not in str(raised.value)
    assert pii_fingerprint(EMAIL) in str(raised.value)
