"""Translate client errors into Temporal failures with the right retry behaviour."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from ct_insider.commercetools.errors import CommercetoolsError
from ct_insider.insider.errors import InsiderError, InsiderRateLimited

# Failure types a workflow's RetryPolicy must not retry: an operator has to act first.
NON_RETRYABLE_TYPES = ["ConfigurationError", "InvalidRequest"]


def as_application_error(exc: Exception) -> ApplicationError:
    if isinstance(exc, InsiderRateLimited):
        delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
        return ApplicationError(str(exc), type="RateLimited", next_retry_delay=delay)
    if isinstance(exc, InsiderError | CommercetoolsError):
        if exc.retryable:
            return ApplicationError(str(exc), type="Unavailable")
        if exc.status_code in (401, 403):
            return ApplicationError(str(exc), type="ConfigurationError", non_retryable=True)
        return ApplicationError(str(exc), type="InvalidRequest", non_retryable=True)
    return ApplicationError(f"{type(exc).__name__}: {exc}", type="Unexpected")
