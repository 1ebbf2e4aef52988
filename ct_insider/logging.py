"""Structured logging that keeps secrets and raw PII out of every log line."""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

# Keys whose values are never logged as they are. PII is replaced by a short stable hash
# so an operator can still correlate lines about one person without seeing who it is.
_SECRET_KEYS = frozenset(
    {
        "password",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "api_key",
        "authorization",
        "x-request-token",
    }
)
_PII_KEYS = frozenset(
    {
        "email",
        "phone",
        "phone_number",
        "name",
        "surname",
        "first_name",
        "last_name",
        "firstname",
        "lastname",
        "birthday",
        "date_of_birth",
        "street",
        "address",
        "city",
        "customer_email",
        "old_email",
        "new_email",
    }
)


def pii_fingerprint(value: str) -> str:
    """A short, stable, non-reversible tag for a PII value (for log correlation)."""
    return "pii:" + hashlib.sha256(value.encode()).hexdigest()[:12]


# Values that identify a person inside free text (Insider's refusals repeat what they
# refuse: "user has an invalid phone number: 12345"): emails, and digit runs of 5 or more
# that are not dates (timestamps in a refusal are not personal).
_PII_IN_TEXT = re.compile(
    r"[^\s@:,;\"']+@[^\s@:,;\"']+|(?<![\d-])(?!\d{4}-\d{2}-\d{2})\+?\d[\d\s().-]{3,}\d"
)


def mask_pii(text: str) -> str:
    """Free text with each email- or phone-like value replaced by its fingerprint."""
    return _PII_IN_TEXT.sub(lambda match: pii_fingerprint(match.group(0)), text)


def redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            lowered = str(key).lower()
            if lowered in _SECRET_KEYS:
                out[key] = "***"
            elif lowered in _PII_KEYS and item is not None:
                out[key] = pii_fingerprint(str(item))
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def _redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return redact(event_dict)  # type: ignore[no-any-return]


class _CurrentStderrLogger:
    """Writes each line to whatever `sys.stderr` is at that moment.

    structlog's PrintLogger keeps the stream it was created with; when that stream is
    replaced and closed (test capture, a daemon's redirection), every later log call
    raises - and a log line in an error path then turns a 503 into a 500.
    """

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _stderr_logger_factory(*_args: Any) -> _CurrentStderrLogger:
    return _CurrentStderrLogger()


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger_factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    # httpx logs full URLs at INFO; query strings can carry identifiers.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
