"""Run statistics and rejected-record reports, shared by activities, workflows and the CLI."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationError

# A run keeps this many rejected records in its report (all are counted and logged).
MAX_REPORTED_REJECTIONS = 1_000


class Rejection(BaseModel):
    record_id: str
    stage: Literal["mapping", "insider"]
    reasons: list[str]
    # The commercetools record to read again to re-drive it, when not `record_id` itself
    # (a catalog item's product).
    source_id: str | None = None


class SyncStats(BaseModel):
    processed: int = 0
    sent: int = 0
    # read but with nothing new to send (same version as last sent; events all delivered)
    skipped: int = 0
    events: int = 0  # Insider events delivered (orders: purchases, refunds, cancellations)
    # Orders older than the live window (ct_insider/sync/history.py): sent without starting
    # journeys, or as their profile only.
    historical: int = 0
    # Events of a request that may have been stored, found in Insider when it was settled.
    found_in_insider: int = 0
    rejected: int = 0
    failed: int = 0
    warnings: int = 0
    busy_seconds: float = 0.0
    rejections: list[Rejection] = Field(default_factory=list)

    def add(self, other: SyncStats) -> None:
        self.processed += other.processed
        self.sent += other.sent
        self.skipped += other.skipped
        self.events += other.events
        self.historical += other.historical
        self.found_in_insider += other.found_in_insider
        self.rejected += other.rejected
        self.failed += other.failed
        self.warnings += other.warnings
        self.busy_seconds += other.busy_seconds
        room = MAX_REPORTED_REJECTIONS - len(self.rejections)
        if room > 0:
            self.rejections.extend(other.rejections[:room])

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REPORTED_REJECTIONS:
            self.rejections.append(rejection)

    @property
    def records_per_second(self) -> float:
        return self.processed / self.busy_seconds if self.busy_seconds > 0 else 0.0


def validation_reasons(exc: ValidationError) -> list[str]:
    """A record that does not parse, as reasons an operator can act on."""
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
