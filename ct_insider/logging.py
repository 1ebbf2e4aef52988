"""Structured logging that keeps secrets and raw PII out of every log line."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog
import temporalio.activity
import temporalio.workflow

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


# The secret that keys PII fingerprints (HMAC-SHA256), set once at process start by
# `configure_pii_fingerprints`: an unkeyed hash of a phone number or an email could be
# reversed by hashing every E.164 number or a list of addresses. Module-level because the
# pure code that fingerprints (drift reports, refusal messages, erasure plans) has no
# settings; None (TEMPORAL_CODEC_DISABLED, or nothing configured) means unkeyed SHA-256.
_fingerprint_key: bytes | None = None


def use_fingerprint_key(key: bytes | None) -> None:
    """Key every later fingerprint with `key` (None: the unkeyed fallback)."""
    global _fingerprint_key
    _fingerprint_key = key


def fingerprints_keyed() -> bool:
    return _fingerprint_key is not None


def pii_digest(value: str) -> str:
    """Hex HMAC-SHA256 of `value` under the fingerprint key (unkeyed SHA-256 without one):
    stable across processes with the same TEMPORAL_CODEC_KEYS and key id."""
    if _fingerprint_key is None:
        return hashlib.sha256(value.encode()).hexdigest()
    return hmac.new(_fingerprint_key, value.encode(), hashlib.sha256).hexdigest()


def pii_fingerprint(value: str) -> str:
    """A short, stable, non-reversible tag for a PII value (for log correlation)."""
    return "pii:" + pii_digest(value)[:12]


def configure_pii_fingerprints() -> bool:
    """Key fingerprints with a key derived (HKDF) from the payload codec's encrypting key;
    return whether they are keyed. Without keys (TEMPORAL_CODEC_DISABLED, which this says
    in a warning, or settings the command refuses when it connects) they stay unkeyed."""
    # Imported here: configuration imports nothing of logging, and keeps it that way.
    from pydantic import ValidationError

    from ct_insider.codec_keys import fingerprint_key
    from ct_insider.config import PayloadCodecSettings

    try:
        ring = PayloadCodecSettings().key_ring()
    except ValidationError:  # the command says what is wrong when it connects to Temporal
        use_fingerprint_key(None)
        return False
    use_fingerprint_key(fingerprint_key(ring) if ring is not None else None)
    if ring is None:
        get_logger(__name__).warning(
            "pii fingerprints are unkeyed sha256 (TEMPORAL_CODEC_DISABLED): they can be "
            "reversed by guessing; local development only"
        )
    return ring is not None


# Values that identify a person inside free text (Insider's refusals repeat what they
# refuse: "user has an invalid phone number: 12345"): emails, and digit runs of 5 or more
# that are not dates (timestamps in a refusal are not personal).
# A digit run counts only as a whole token: inside an identifier (a UUID's "8687-8f29",
# a task queue's name) or a time of day it is not a phone number.
_PII_IN_TEXT = re.compile(
    r"[^\s@:,;\"']+@[^\s@:,;\"']+"
    r"|(?<![\w+-])(?!\d{4}-\d{2}-\d{2})\+?\d[\d\s().-]{3,}\d(?![\w-])"
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


# Values that are identifiers or bookkeeping, never free text: masking digit runs in them
# would only garble ids (a UUID holds "1234-5678").
_NOT_FREE_TEXT = frozenset(
    {"timestamp", "level", "logger", "lane", "run", "cursor", "key", "keys", "task_queue"}
)


def _mask_text_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Emails and phone numbers inside messages and free-text values (a library's message,
    an error repeating what Insider refused) become fingerprints."""
    for key, value in event_dict.items():
        if (
            isinstance(value, str)
            and key not in _NOT_FREE_TEXT
            and not key.endswith(("id", "_ids"))
            and not key.startswith("_")
        ):
            event_dict[key] = mask_pii(value)
    return event_dict


def _temporal_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The workflow id, run id and activity type of the activity or workflow logging."""
    if "workflow_id" in event_dict:
        return event_dict
    if temporalio.activity.in_activity():
        activity = temporalio.activity.info()
        event_dict.setdefault("workflow_id", activity.workflow_id)
        event_dict.setdefault("run_id", activity.workflow_run_id)
        event_dict.setdefault("activity", activity.activity_type)
        event_dict.setdefault("attempt", activity.attempt)
    elif temporalio.workflow.in_workflow():
        workflow = temporalio.workflow.info()
        event_dict.setdefault("workflow_id", workflow.workflow_id)
        event_dict.setdefault("run_id", workflow.run_id)
        event_dict.setdefault("workflow_type", workflow.workflow_type)
    return event_dict


def _from_stdlib_record(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A standard-library record's logger name, the Temporal SDK's `temporal_*` extras
    (its activity and workflow loggers attach them) as the same fields our lines carry, and
    the fields of a line forwarded from the SDK's core (numbers stay numbers)."""
    record: logging.LogRecord | None = event_dict.get("_record")
    if record is None:
        return event_dict
    event_dict.setdefault("logger", record.name)
    core = getattr(record, "temporal_log", None)
    if core is not None:
        for key, value in core.fields.items():
            event_dict.setdefault(str(key), value)
    for extra in ("temporal_activity", "temporal_workflow"):
        info = getattr(record, extra, None)
        if isinstance(info, Mapping):
            event_dict.setdefault("workflow_id", info.get("workflow_id"))
            event_dict.setdefault("run_id", info.get("run_id") or info.get("workflow_run_id"))
            if "activity_type" in info:
                event_dict.setdefault("activity", info["activity_type"])
            if "workflow_type" in info and "activity_type" not in info:
                event_dict.setdefault("workflow_type", info["workflow_type"])
    return event_dict


class _CurrentStderrLogger:
    """Writes each line to whatever `sys.stderr` is at that moment.

    structlog's PrintLogger keeps the stream it was created with; when that stream is
    replaced and closed (test capture, a daemon's redirection), every later log call
    raises - and a log line in an error path then turns a 503 into a 500.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name  # the module's, from get_logger(name): the line's `logger` field

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _stderr_logger_factory(*args: Any) -> _CurrentStderrLogger:
    return _CurrentStderrLogger(args[0] if args and isinstance(args[0], str) else None)


def _logger_name(
    logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The `logger` field of our lines (first, as a bound value would be)."""
    name = getattr(logger, "name", None)
    if isinstance(name, str) and "logger" not in event_dict:
        return {"logger": name, **event_dict}
    return event_dict


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The standard library's lines, to whatever `sys.stderr` is at that moment."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


# Loggers that install handlers of their own (uvicorn's dictConfig) propagate to ours.
_LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "temporalio", "httpx")


def configure_logging(level: str = "INFO", json: bool | None = None) -> None:
    """Every line, ours and the libraries' (standard library logging: uvicorn, httpx, the
    Temporal SDK), as structlog JSON; console-pretty when `json` is False, or when it is None
    and stderr is a terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        _logger_name,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _temporal_context,
        # Before the masking: a traceback repeats the exception's message, which can hold
        # the email or phone number an error is about (the SDK logs every failed activity's).
        structlog.processors.format_exc_info,
        _redact_processor,
        _mask_text_processor,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger_factory,
        cache_logger_on_first_use=True,
    )
    handler = _CurrentStderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_from_stdlib_record, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in _LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers = []
        library.propagate = True
    # httpx logs full URLs at INFO; query strings can carry identifiers.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger that takes its configuration at its first line. Not bound here: binding
    configures it at once, and a module-level logger (`log = get_logger(__name__)`) created
    before configure_logging() would keep structlog's defaults - console lines on stdout,
    nothing masked."""
    return structlog.get_logger(name)  # type: ignore[no-any-return]
