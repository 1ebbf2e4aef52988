"""Which `Matching` an Insider account supports, found by writing one event and reading it back.

Insider does not document whether a profile read returns custom event params (our
storefront and sign-up events carry their id as `event_params.custom.event_id`), nor that a
read's `created_date` is the timestamp the event was sent with. Settlement depends on one
of the two, so `ct-insider setup insider` and `ct-insider doctor` probe the live account:

- one `product_detail_page_view` (a default event, so it exists in every account; InOne
  must define its custom param `event_id`, as for every storefront event) with product
  `ct-insider-probe` and a fresh `event_id`, timestamped an hour back (a read that returned
  when Insider received the event instead would then not match);
- upserted with `skip_hook` (no journey starts on it) to the probe profile, uuid
  `ct-insider-probe` (no commercetools customer has it; no email or phone, so no campaign
  reaches it), then read back, waiting out Insider's read-after-write lag with a bounded
  backoff;
- the profile is deleted afterwards, whatever the outcome (one that a failed deletion left
  behind is deleted by the next probe): a segment of product viewers may count it for the
  seconds it exists, no longer.

The answer: `event_id` when the read returns the event's `event_id`, `fingerprint` when it
returns its product and second but not the id; neither is a `ProbeFailed`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.errors import InsiderError
from ct_insider.insider.held import Matching, unix_second
from ct_insider.insider.models import Event, Identifiers, User
from ct_insider.logging import get_logger
from ct_insider.mapping import normalize

log = get_logger(__name__)

PROBE_UUID = "ct-insider-probe"
PROBE_EVENT = "product_detail_page_view"
PROBE_PRODUCT = "ct-insider-probe"
PROBE_AGE = timedelta(hours=1)
# Reads after the account's settle grace: the event may not be readable at once.
RETRY_WAITS = (1.0, 2.0, 4.0, 8.0)
# The read asks for events this far around the probe's timestamp.
READ_WINDOW = timedelta(minutes=5)


class ProbeFailed(Exception):
    """The probe found no matching this account supports, or could not tell (the message
    says which, for an operator)."""


class ProbeAnswer(BaseModel):
    matching: Matching
    event_id_returned: bool  # the read returned the probe event's custom `event_id`
    timestamp_returned: bool  # ... its product and `created_date` to the second
    reads: int


def probe_waits(grace_seconds: float) -> list[float]:
    """Seconds to wait before each read: the account's settle grace, then a backoff."""
    return [grace_seconds, *RETRY_WAITS]


async def probe_matching(
    insider: InsiderClient,
    waits: Sequence[float],
    *,
    now: datetime | None = None,
    event_id: str | None = None,
) -> ProbeAnswer:
    """Write the probe event, read it back (one read after each of `waits`), delete the
    probe profile. Raises ProbeFailed, or what Insider raised (a refused token...)."""
    sent_at = ((now or datetime.now(UTC)) - PROBE_AGE).replace(microsecond=0)
    probe_id = event_id or f"ct-insider-probe-{uuid.uuid4()}"
    event = Event(
        event_name=PROBE_EVENT,
        timestamp=normalize.timestamp(sent_at),
        event_params={"product_id": PROBE_PRODUCT, "custom": {"event_id": probe_id}},
    )
    identifiers = Identifiers(uuid=PROBE_UUID)
    try:
        # Repeatable: a probe event stored twice is harmless (the read looks for any).
        result = await insider.upsert_users(
            [User(identifiers=identifiers, events=[event])], skip_hook=True
        )
        if result.failures:
            raise ProbeFailed(
                f"Insider refused the probe event ({PROBE_EVENT} with custom param event_id): "
                + "; ".join(result.failures[0].reasons)
                + " - define what `ct-insider setup insider` lists in InOne first"
            )
        return await _read_back(insider, waits, identifiers, probe_id, sent_at)
    finally:
        try:
            await insider.delete_user(identifiers.strongest())
        except InsiderError as exc:
            log.warning("probe profile not deleted", uuid=PROBE_UUID, error=str(exc))


async def _read_back(
    insider: InsiderClient,
    waits: Sequence[float],
    identifiers: Identifiers,
    probe_id: str,
    sent_at: datetime,
) -> ProbeAnswer:
    sent_second = int(sent_at.timestamp())
    query = {
        "start_date": int((sent_at - READ_WINDOW).timestamp()),
        "end_date": int((sent_at + READ_WINDOW).timestamp()),
        "wanted": [{"event_name": PROBE_EVENT, "params": ["event_id", "product_id"]}],
    }
    seen: list[dict[str, Any]] = []
    for reads, wait in enumerate(waits, start=1):
        await asyncio.sleep(wait)
        profile = await insider.read_profile(
            identifiers.strongest(), attributes=["uuid"], events=query
        )
        seen = list(((profile or {}).get("events") or {}).get(PROBE_EVENT) or [])
        id_back = any(str(e.get("event_id")) == probe_id for e in seen)
        second_back = any(
            str(e.get("product_id")) == PROBE_PRODUCT
            and unix_second(e.get("created_date")) == sent_second
            for e in seen
        )
        if id_back or second_back:
            return ProbeAnswer(
                matching="event_id" if id_back else "fingerprint",
                event_id_returned=id_back,
                timestamp_returned=second_back,
                reads=reads,
            )
    if seen:
        returned = sorted({key for e in seen for key in e})
        dates = sorted({str(e.get("created_date")) for e in seen})
        sent = normalize.timestamp(sent_at)
        raise ProbeFailed(
            f"the probe profile's {PROBE_EVENT} events came back with neither the probe's "
            f"event_id nor its product and timestamp {sent} (fields returned: "
            f"{', '.join(returned)}; created_date: {', '.join(dates)}): settlement cannot "
            "recognise the events it sent in this account"
        )
    raise ProbeFailed(
        f"the probe event was not readable within {sum(waits):g} s of its upsert "
        "(Insider's read-after-write lag): run again"
    )
