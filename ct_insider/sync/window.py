"""The incremental window that serves both backfill (wide) and delta sync (narrow)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, model_validator


def parse_timestamp(value: str) -> datetime:
    """commercetools' `2024-05-01T10:00:00.000Z` as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Window(BaseModel):
    """lastModifiedAt in [since, until); either side may be open."""

    since: datetime | None = None
    until: datetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.since and self.until and self.since >= self.until:
            raise ValueError("window start must be before its end")
        return self

    def predicate(self, field: str = "lastModifiedAt") -> str | None:
        clauses = []
        if self.since is not None:
            clauses.append(f'{field} >= "{_iso(self.since)}"')
        if self.until is not None:
            clauses.append(f'{field} < "{_iso(self.until)}"')
        return " and ".join(clauses) or None

    def slug(self) -> str:
        """A stable id fragment, so the same window always names the same workflow."""
        start = _iso(self.since) if self.since else "beginning"
        end = _iso(self.until) if self.until else "now"
        return f"{start}--{end}"
