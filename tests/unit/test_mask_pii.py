"""Free text kept for operators (dead-letter reasons) carries no email or phone number."""

from __future__ import annotations

import re

import pytest

from ct_insider.logging import mask_pii, pii_fingerprint

_FINGERPRINT = re.compile(r"pii:[0-9a-f]{12}")


def test_an_email_in_text_becomes_its_fingerprint() -> None:
    # Given Insider's refusal naming the email it refused
    text = "invalid email jane.doe@example.com, please fix"
    # When it is masked
    masked = mask_pii(text)
    # Then the email is replaced by its fingerprint and the rest is kept
    assert masked == f"invalid email {pii_fingerprint('jane.doe@example.com')}, please fix"


def test_a_quoted_email_is_masked_without_its_quotes() -> None:
    # Given an email in quotes
    masked = mask_pii('email "Ann.Lee@Example.com" is not valid')
    # Then the quotes stay around the fingerprint
    assert masked == f'email "{pii_fingerprint("Ann.Lee@Example.com")}" is not valid'


@pytest.mark.parametrize(
    "phone",
    ["12345", "+15035551234", "+1 (503) 555-1234", "0151 12301234", "503.555.1234"],
)
def test_phone_like_digit_runs_become_fingerprints(phone: str) -> None:
    # Given a refusal repeating a phone number
    text = f"user has an invalid phone number: {phone} (rejected)"
    # When it is masked
    masked = mask_pii(text)
    # Then the whole number, and nothing around it, is replaced by its fingerprint
    assert masked == f"user has an invalid phone number: {pii_fingerprint(phone)} (rejected)"


def test_equal_values_get_equal_fingerprints_and_different_ones_differ() -> None:
    # Given the same email twice and another one
    masked = mask_pii("a@example.com then a@example.com then b@example.com")
    # Then the fingerprints correlate the equal values only
    first, second, third = _FINGERPRINT.findall(masked)
    assert first == second
    assert first != third


@pytest.mark.parametrize(
    "text",
    [
        "event_group_id parameter is required on purchase event",
        "invalid event name: homepageView",
        "Insider 400: users.3.identifiers.email must be a valid email",
        "events.2.event_params.unit_price must be a number",
        "order ORD-1001 refused: no line item with a SKU",
        "at most 1000 users per request",
        "mapping failed: ValueError: signal e-1 names no customer, visitor or email",
    ],
)
def test_ordinary_error_texts_are_untouched(text: str) -> None:
    # Given an error text without personal data
    # When it is masked
    masked = mask_pii(text)
    # Then it is unchanged
    assert masked == text


def test_dates_in_a_refusal_are_not_taken_for_phone_numbers() -> None:
    # Given a refusal that names a timestamp and a phone number
    text = "event at 2026-11-26T18:00:00Z refused for +49 170 1234567"
    # When it is masked
    masked = mask_pii(text)
    # Then the timestamp stays readable and the phone number does not
    assert "2026-11-26T18:00:00Z" in masked
    assert "1234567" not in masked
