"""The dead-letter store: records that could not be delivered, with why, until re-driven.

A record that cannot be delivered as it is - a mapping refusal, a user Insider refuses, a
request refused as a whole - never blocks or loses the others: it is written here and the
rest goes on. Operators list, inspect, re-drive and purge the letters (`ct-insider dlq`);
a re-drive that succeeds removes its letter.

The store lives in the retailer's commercetools project, like the delivery ledger:
custom objects in container `ct-insider-dead-letters`, one per record (key = a hash of
entity and record id), written with the object's version so several workers merge
instead of overwriting. Reasons are masked (Insider's refusals repeat the values they
refuse); what a re-drive needs to send the record again is kept in `redrive`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import httpx
from pydantic import BaseModel, Field

from ct_insider import telemetry
from ct_insider.commercetools.client import CommercetoolsClient
from ct_insider.commercetools.errors import CommercetoolsConflict, CommercetoolsNotFound
from ct_insider.logging import mask_pii

CONTAINER = "ct-insider-dead-letters"
MAX_CONFLICT_RETRIES = 8

# Where a letter's record was being delivered (`ct-insider dlq list --path`): a backfill,
# a delta sync, the full catalog sync (or its nightly reconciliation), realtime.
DeadLetterPath = Literal["backfill", "delta", "catalog", "realtime", "check"]
PATHS: tuple[DeadLetterPath, ...] = get_args(DeadLetterPath)


def letter_key(entity: str, record_id: str) -> str:
    # Custom object keys allow [-_~.a-zA-Z0-9] only.
    return hashlib.sha256(f"{entity}:{record_id}".encode()).hexdigest()[:40]


class DeadLetterDraft(BaseModel):
    """What a delivery path reports about a record it could not deliver."""

    entity: str  # storefront-event, customer, order, ...
    record_id: str  # the event id, customer id or order id
    reasons: list[str]
    run: str  # the workflow (id) that hit it
    market: dict[str, str] = Field(default_factory=dict)  # channel, country, store, ...
    redrive: dict[str, Any] | None = None  # what a re-drive sends again
    # What makes the letter one of its own (a journey signal's dedupe key: two messages
    # about one customer are two letters); the record id when not given.
    source: str | None = None
    # backfill, delta, catalog or realtime; letters written before paths were recorded
    # are realtime ones (only journeys wrote letters then).
    path: str | None = None

    @property
    def key(self) -> str:
        return letter_key(self.entity, self.source or self.record_id)

    @property
    def path_name(self) -> str:
        return self.path or "realtime"


class DeadLetter(DeadLetterDraft):
    first_seen: datetime
    last_seen: datetime
    attempts: int = 1
    version: int = 0  # the custom object's version


class DeadLetterStore:
    def __init__(self, ct: CommercetoolsClient, *, container: str = CONTAINER) -> None:
        self._ct = ct
        self._container = container

    async def put(self, drafts: Sequence[DeadLetterDraft]) -> None:
        """Record each draft: a new letter, or one more attempt on an existing one."""
        await asyncio.gather(*(self._put(draft) for draft in drafts))
        for draft in drafts:
            telemetry.count_records(draft.path_name, draft.entity, dead_lettered=1)

    async def _put(self, draft: DeadLetterDraft) -> None:
        masked = draft.model_copy(update={"reasons": [mask_pii(r) for r in draft.reasons]})
        existing = await self.get(draft.key)
        for _ in range(MAX_CONFLICT_RETRIES):
            now = datetime.now(UTC)
            letter = DeadLetter(
                **masked.model_dump(),
                first_seen=existing.first_seen if existing else now,
                last_seen=now,
                attempts=existing.attempts + 1 if existing else 1,
            )
            try:
                await self._ct.post_json(
                    "custom-objects",
                    {
                        "container": self._container,
                        "key": draft.key,
                        "value": letter.model_dump(mode="json", exclude={"version"}),
                        "version": existing.version if existing else 0,
                    },
                )
                return
            except CommercetoolsConflict:
                existing = await self.get(draft.key)
        raise CommercetoolsConflict(409, f"dead letter {draft.key} keeps changing", [])

    async def get(self, key: str) -> DeadLetter | None:
        try:
            found = await self._ct.get_json(f"custom-objects/{self._container}/{key}")
        except CommercetoolsNotFound:
            return None
        return _letter(found)

    async def list(
        self, entity: str | None = None, limit: int | None = None, *, path: str | None = None
    ) -> list[DeadLetter]:
        """Letters oldest first (by when each was first written), at most `limit`.

        Reads every page: pages come in key order (a hash), so the oldest letters can be on
        any page."""
        where = f"container={json.dumps(self._container)}"
        letters: list[DeadLetter] = []
        async for page in self._ct.pages("custom-objects", where=where):
            for found in page.results:
                letter = _letter(found)
                if entity in (None, letter.entity) and path in (None, letter.path_name):
                    letters.append(letter)
        letters.sort(key=lambda letter: letter.first_seen)
        return letters[:limit] if limit is not None else letters

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete letters; `key@version` deletes only that version (a letter a newer failure
        changed since stays)."""
        await asyncio.gather(*(self._delete(key) for key in keys))

    async def _delete(self, key: str) -> None:
        name, _, version = key.partition("@")
        params = httpx.QueryParams({"version": version}) if version else None
        try:
            await self._ct.delete(f"custom-objects/{self._container}/{name}", params)
        except CommercetoolsConflict:
            return  # changed since it was re-driven: it stays, with its newer reason


def _letter(found: dict[str, Any]) -> DeadLetter:
    return DeadLetter.model_validate({**found["value"], "version": found["version"]})
