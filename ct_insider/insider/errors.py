"""Insider errors, split by what a caller should do about them."""

from __future__ import annotations


class InsiderError(Exception):
    retryable = False

    def __init__(self, status_code: int, message: str, *, maybe_stored: bool = False) -> None:
        super().__init__(f"Insider {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        # The request may have been processed: a 5xx answer, or a connection lost after the
        # request was written. Repeating a request that carries events could store them twice.
        self.maybe_stored = maybe_stored


class InsiderConfigurationError(InsiderError):
    """401/403: wrong partner name, token or IP allow-list. Stop and fix the settings."""


class InsiderBadRequest(InsiderError):
    """400: the request as a whole was refused (e.g. size limits); retrying will not help."""


class InsiderRateLimited(InsiderError):
    """429 after the client's own retries. `retry_after` is the server's hint, if it gave one."""

    retryable = True

    def __init__(self, status_code: int, message: str, retry_after: float | None) -> None:
        super().__init__(status_code, message)
        self.retry_after = retry_after


class InsiderUnavailable(InsiderError):
    """5xx or a transport failure after the client's own retries."""

    retryable = True
