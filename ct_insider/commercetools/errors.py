"""Typed commercetools errors carrying the API's own error codes."""

from __future__ import annotations

from typing import Any

import httpx


class CommercetoolsError(Exception):
    """An error answer from commercetools; `retryable` tells a caller whether to try again."""

    retryable = False

    def __init__(self, status_code: int, message: str, codes: list[str]) -> None:
        super().__init__(
            f"commercetools {status_code}: {message} (codes: {', '.join(codes) or '-'})"
        )
        self.status_code = status_code
        self.message = message
        self.codes = codes

    @classmethod
    def from_response(cls, response: httpx.Response) -> CommercetoolsError:
        message = response.reason_phrase
        codes: list[str] = []
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("error_description") or message)
            for err in body.get("errors") or []:
                if isinstance(err, dict) and "code" in err:
                    codes.append(str(err["code"]))
            if not codes and "error" in body:
                codes.append(str(body["error"]))
        status = response.status_code
        error_class: type[CommercetoolsError]
        if status in (401, 403):
            error_class = CommercetoolsAuthError
        elif status == 404:
            error_class = CommercetoolsNotFound
        elif status == 409:
            error_class = CommercetoolsConflict
        elif status >= 500 or status == 429:
            error_class = CommercetoolsUnavailable
        else:
            error_class = CommercetoolsRequestError
        return error_class(status, message, codes)


class CommercetoolsAuthError(CommercetoolsError):
    """Bad credentials or missing scopes: an operator must fix the configuration."""


class CommercetoolsNotFound(CommercetoolsError):
    pass


class CommercetoolsConflict(CommercetoolsError):
    """409 ConcurrentModification: someone wrote first; re-read and try again."""

    retryable = True


class CommercetoolsRequestError(CommercetoolsError):
    """4xx: the request itself is wrong (e.g. InvalidInput); retrying does not help."""


class CommercetoolsUnavailable(CommercetoolsError):
    """5xx or 429 after the client's own retries: worth a later, durable retry."""

    retryable = True
