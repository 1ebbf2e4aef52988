"""Which token a request presents to the bridge (header first, then the query string)."""

from __future__ import annotations

import pytest

from bridge.auth import presented_token


def scope(headers: dict[str, str] | None = None, query: str = "") -> dict[str, object]:
    return {
        "type": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "query_string": query.encode(),
    }


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Authorization": "Bearer abc"}, "", "abc"),
        ({"Authorization": "bearer abc"}, "", "abc"),
        ({"Authorization": "Basic abc"}, "", ""),
        ({}, "token=from-query&x=1", "from-query"),
        ({"Authorization": "Bearer "}, "token=from-query", "from-query"),
        ({"Authorization": "Bearer header"}, "token=from-query", "header"),
        ({}, "", ""),
        ({}, "other=token", ""),
    ],
)
def test_presented_token(headers: dict[str, str], query: str, expected: str) -> None:
    # Given a request's headers and query string, When the bridge reads its token
    assert presented_token(scope(headers, query)) == expected  # Then this one counts
