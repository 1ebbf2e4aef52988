"""Normalizers for values Insider validates: each returns None for a value it must not send."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from urllib.parse import quote

import phonenumbers

# Insider's own validation patterns (from its error messages).
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LOCALE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_]([a-zA-Z]{2}))?$")
_WEB_SCHEME = re.compile(r"^(https?)://", re.IGNORECASE)
# Insider's catalog pattern for url and image_url.
_CATALOG_URL = re.compile(r"^https?://\S+$")
# What a URL keeps as it is: its delimiters and existing %-escapes; the rest (whitespace,
# non-ASCII, quotes, braces) is percent-encoded.
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def email(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = value.strip().lower()
    return cleaned if _EMAIL.match(cleaned) else None


def phone_e164(value: str | None, region: str | None) -> str | None:
    """E.164 or None; a national number needs the address country as its region."""
    if not value or not value.strip():
        return None
    try:
        parsed = phonenumbers.parse(value, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def birthday(value: str | None) -> str | None:
    """commercetools' YYYY-MM-DD to RFC 3339 ending in Z, as Insider requires."""
    if not value:
        return None
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        return None
    if parsed.year < 1900:
        return None
    return f"{parsed.isoformat()}T00:00:00Z"


def timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a Z and whole seconds (fractional seconds are not confirmed)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # Not strftime: its %Y writes the year 999 as `999`, which is no RFC 3339 date.
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def insider_language(locale: str | None, country: str | None = None) -> str | None:
    """commercetools `en-US` / `de` to Insider's `en_US`; a bare language borrows the country."""
    if not locale:
        return None
    match = _LOCALE.match(locale.strip())
    if match is None:
        return None
    language, region = match.group(1).lower(), match.group(2) or country
    if not region or len(region) != 2:
        return None
    return f"{language}_{region.upper()}"


def web_url(value: str | None) -> str | None:
    """An http(s) URL as Insider's catalog takes it (`^https?://\\S+$`): trimmed, the scheme
    in lower case, a protocol-relative `//host/...` given https, whitespace and non-ASCII
    percent-encoded; None for no URL or another scheme (ftp:, a bare path)."""
    if not value or not value.strip():
        return None
    cleaned = value.strip()
    if cleaned.startswith("//"):
        cleaned = "https:" + cleaned
    scheme = _WEB_SCHEME.match(cleaned)
    if scheme is None:
        return None
    url = scheme.group(1).lower() + "://" + quote(cleaned[scheme.end() :], safe=_URL_SAFE)
    return url if _CATALOG_URL.match(url) else None


def country_code(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2, upper case; None for anything else (`isalpha` alone let through
    non-ASCII letters such as `ÄÖ`, which Insider refuses as a country)."""
    if value and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def language_preference(locale: str | None, fallback_language: str) -> list[str]:
    """commercetools locale keys to try, most specific first: `de-DE`, `de`, then the fallback."""
    preference: list[str] = []
    if locale:
        cleaned = locale.strip().replace("_", "-")
        preference.append(cleaned)
        preference.append(cleaned.split("-")[0])
    fallback = fallback_language.replace("_", "-")
    preference.extend([fallback, fallback.split("-")[0]])
    return list(dict.fromkeys(preference))


def localized(value: dict[str, str] | None, preference: list[str]) -> str | None:
    """Pick a LocalizedString entry by preference, matching case-insensitively and by language."""
    if not value:
        return None
    lowered = {key.lower(): text for key, text in value.items()}
    for wanted in preference:
        if wanted.lower() in lowered:
            return lowered[wanted.lower()]
        for key, text in lowered.items():
            if key.split("-")[0] == wanted.lower():
                return text
    return value[min(value)]  # some name beats none; the smallest key keeps it deterministic
