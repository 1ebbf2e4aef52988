"""Insider request and response models (the UCD upsert and Catalog API shapes)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class InsiderModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Identifiers(InsiderModel):
    uuid: str | None = None
    email: str | None = None
    phone_number: str | None = None
    custom: dict[str, str] | None = None

    def is_empty(self) -> bool:
        return not (self.uuid or self.email or self.phone_number or self.custom)

    def strongest(self) -> dict[str, Any]:
        """The one identifier a profile read takes: the highest-priority one present."""
        for name in ("uuid", "email", "phone_number"):
            value = getattr(self, name)
            if value:
                return {name: value}
        return {"custom": dict(self.custom or {})}


class Attributes(InsiderModel):
    name: str | None = None
    surname: str | None = None
    email: str | None = None
    phone_number: str | None = None
    gender: str | None = None
    birthday: str | None = None
    language: str | None = None
    country: str | None = None
    city: str | None = None
    email_optin: bool | None = None
    sms_optin: bool | None = None
    whatsapp_optin: bool | None = None
    gdpr_optin: bool | None = None
    custom: dict[str, Any] | None = None


class Event(InsiderModel):
    event_name: str
    timestamp: str
    event_params: dict[str, Any] = Field(default_factory=dict)


class User(InsiderModel):
    identifiers: Identifiers
    attributes: Attributes | None = None
    events: list[Event] | None = None
    not_append: bool | None = None


_EVENT_FIELD = re.compile(r"^events\.(\d+)\.")


class RecordFailure(BaseModel):
    """One record Insider (or our own mapping) refused, with the reasons an operator reads."""

    index: int
    reasons: list[str]
    # Insider's error keys below the user, e.g. "events.2.event_params.*.required".
    fields: list[str] = Field(default_factory=list)

    def event_positions(self) -> set[int] | None:
        """The user's events Insider named, or None when a reason is about the whole user
        (its identifiers or attributes): then no event of it can be sent as it is."""
        positions: set[int] = set()
        for name in self.fields:
            match = _EVENT_FIELD.match(name)
            if match is None:
                return None
            positions.add(int(match.group(1)))
        return positions or None


class UpsertResult(BaseModel):
    successful: int = 0
    failures: list[RecordFailure] = Field(default_factory=list)
    requests: int = 0


class CatalogLocale(InsiderModel):
    language_and_country_code: str
    store_id: str | None = None


class CatalogInvalidDetail(BaseModel):
    field: str
    message: str
    document_ids: list[str] = Field(default_factory=list)


class CatalogResult(BaseModel):
    valid: int = 0
    invalid: int = 0
    details: list[CatalogInvalidDetail] = Field(default_factory=list)
    requests: int = 0
