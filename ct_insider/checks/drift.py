"""The drift report: what Insider holds that differs from what commercetools says it should.

Values of personal fields never appear in a report (it is printed, stored in Temporal's
history and pasted into tickets): a stale email shows which field differs, with a
fingerprint of each value so two reports can still be compared.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ct_insider.logging import pii_fingerprint
from ct_insider.resources import CheckEntity as CheckEntity  # the registry's check entities

DriftKind = Literal["missing", "stale", "extra", "duplicated"]
# Where the "found" side of a check comes from.
Source = Literal["insider-profile-api", "fingerprint-store"]

# Attributes whose values identify a person: shown as fingerprints, never as values.
PERSONAL_FIELDS = frozenset(
    {"email", "phone_number", "name", "surname", "birthday", "gender", "city"}
)
# How many drifted records a report lists per kind (the counts keep going).
MAX_LISTED = 500

DUPLICATES_NEED_MANUAL_ACTION = (
    "duplicated and extra events need manual action: Insider's API cannot delete events, "
    "so a repair reports them and sends nothing; remove them in InOne or ask Insider support"
)


def shown(field: str, value: Any) -> str:
    """A value as a report shows it: personal ones as a fingerprint."""
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else repr(value)
    # Custom attributes come from commercetools custom fields, which may hold anything
    # personal (a nickname, a second phone): never shown as values.
    if field.startswith("custom.") or field.rpartition(".")[2] in PERSONAL_FIELDS:
        return pii_fingerprint(text)
    return text


class FieldDrift(BaseModel):
    field: str
    expected: str
    found: str

    @classmethod
    def of(cls, field: str, expected: Any, found: Any) -> FieldDrift:
        return cls(field=field, expected=shown(field, expected), found=shown(field, found))


class RecordDrift(BaseModel):
    """One drifted record: a customer, an order's event, a catalog item."""

    kind: DriftKind
    record_id: str  # the commercetools id (customer, order, product)
    item: str | None = None  # within the record: an event key, a catalog item `sku@locale`
    fields: list[FieldDrift] = Field(default_factory=list)  # stale: what differs
    count: int = 1  # duplicated: how many copies too many
    detail: str | None = None
    repaired: bool = False


class DriftCounts(BaseModel):
    missing: int = 0
    stale: int = 0
    extra: int = 0
    duplicated: int = 0

    @property
    def total(self) -> int:
        return self.missing + self.stale + self.extra + self.duplicated


class DriftReport(BaseModel):
    entity: CheckEntity
    source: Source
    sampled: int = 0  # commercetools records looked at
    checked: int = 0  # of those, compared with what Insider holds
    skipped: int = 0  # not mappable (the sync rejects them too): nothing to compare
    # Changed or delivered too recently to judge (Insider may not show them yet), or being
    # delivered by another run right now: not compared, not repaired.
    too_recent: int = 0
    profile_reads: int = 0
    units_spent: float = 0.0  # profile quota units the reads cost
    missing: list[RecordDrift] = Field(default_factory=list)
    stale: list[RecordDrift] = Field(default_factory=list)
    extra: list[RecordDrift] = Field(default_factory=list)
    duplicated: list[RecordDrift] = Field(default_factory=list)
    counts: DriftCounts = Field(default_factory=DriftCounts)
    repaired: int = 0  # drifted records sent again and accepted
    repair_failures: list[str] = Field(default_factory=list)
    # Records Insider refused to read (a 400): not compared, named with the reason.
    unreadable: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def add(self, drift: RecordDrift) -> None:
        listed: list[RecordDrift] = getattr(self, drift.kind)
        if len(listed) < MAX_LISTED:
            listed.append(drift)
        setattr(self.counts, drift.kind, getattr(self.counts, drift.kind) + 1)

    def merge(self, other: DriftReport) -> None:
        """Add a part of the run (one chunk of records) to this report."""
        self.sampled += other.sampled
        self.checked += other.checked
        self.skipped += other.skipped
        self.too_recent += other.too_recent
        self.profile_reads += other.profile_reads
        self.units_spent = round(self.units_spent + other.units_spent, 2)
        for kind in ("missing", "stale", "extra", "duplicated"):
            listed: list[RecordDrift] = getattr(self, kind)
            listed.extend(getattr(other, kind)[: max(0, MAX_LISTED - len(listed))])
            setattr(self.counts, kind, getattr(self.counts, kind) + getattr(other.counts, kind))
        self.repaired += other.repaired
        # Capped like the listed records: a report crosses continue-as-new and must stay small.
        room = max(0, MAX_LISTED - len(self.repair_failures))
        self.repair_failures.extend(other.repair_failures[:room])
        self.unreadable.extend(other.unreadable[: max(0, MAX_LISTED - len(self.unreadable))])
        for note in other.notes:
            if note not in self.notes:
                self.notes.append(note)

    def drifts(self) -> list[RecordDrift]:
        return [*self.missing, *self.stale, *self.extra, *self.duplicated]

    def repairable(self) -> list[RecordDrift]:
        """What a repair sends again: everything but duplicates (Insider cannot delete)."""
        return [d for d in self.drifts() if d.kind != "duplicated" and not d.repaired]

    @property
    def unrepaired(self) -> int:
        """Drifted records still wrong in Insider after this run (duplicates always count)."""
        return self.counts.total - self.repaired

    @property
    def drift_left(self) -> bool:
        """Something is (or may be) still wrong in Insider after this run."""
        return bool(self.unrepaired or self.repair_failures or self.unreadable)
