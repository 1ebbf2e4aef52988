"""Which of some events Insider already holds: the one check that settles a doubtful delivery.

Insider stores every event it receives and has no deduplication key, so a request that may
have been stored (a 5xx, an answer lost, a sender that died mid-request) cannot simply be
sent again. This check reads the profile once per person (paced to the profile quota) and
says, event by event, whether it is there:

- an event that carries its own id (`event_params.custom.event_id`: every storefront event
  and sign-up) is recognised, per the account's `Matching`:
  - `event_id`: by that id, so two views of one product in one second stay two events -
    where the account's profile reads return custom event params;
  - `fingerprint`: where they do not, by name, `product_id` and timestamp to the second
    (a read's `created_date`), counting: a profile holding j events of one fingerprint
    confirms j of those sought, the rest are sent again;
  (`ct-insider setup insider` probes which one the account supports: `probe.py`);
- an order event (purchase, refund, cancellation) is recognised by name, `event_group_id`
  (the order number) and `product_id`, counting.

Counting: the profile's matching events, less those known to have been delivered before,
confirm that many of the ones sought. Every path that sends events uses this check: journey
shards and the order backfill and delta.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import Event, Identifiers

# How an event that carries its own id is recognised in a profile read (see above).
Matching = Literal["event_id", "fingerprint"]
# Reads events this far around the sought ones' timestamps.
READ_SLACK = timedelta(days=1)
# Event params a check asks the profile read for.
MATCH_PARAMS = ["event_id", "event_group_id", "product_id"]

CountKey = tuple[str, str | None, str | None]  # event name, group id, product id
FingerprintKey = tuple[str, str | None, int | None]  # event name, product id, unix second
# What a profile's events are counted by: ("order", CountKey) or ("fingerprint", ...).
MatchKey = tuple[str, CountKey | FingerprintKey]


@dataclass(frozen=True)
class Sought:
    """An event whose arrival is in doubt, reduced to what recognises it in a profile."""

    name: str
    timestamp: str  # RFC 3339, as sent
    event_id: str | None = None
    group_id: str | None = None
    product_id: str | None = None

    @classmethod
    def of(cls, event: Event) -> Sought:
        params = event.event_params
        custom = params.get("custom") or {}
        event_id = custom.get("event_id") if isinstance(custom, dict) else None
        return cls(
            name=event.event_name,
            timestamp=event.timestamp,
            event_id=str(event_id) if event_id is not None else None,
            group_id=_text(params.get("event_group_id")),
            product_id=_text(params.get("product_id")),
        )

    def count_key(self) -> CountKey:
        return (self.name, self.group_id, self.product_id)

    def fingerprint(self) -> FingerprintKey:
        return (self.name, self.product_id, unix_second(self.timestamp))

    def match_key(self, matching: Matching) -> MatchKey | None:
        """What recognises it by counting; None when its own id recognises it."""
        if self.event_id is None:
            return ("order", self.count_key())
        if matching == "event_id":
            return None
        return ("fingerprint", self.fingerprint())


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def unix_second(value: object) -> int | None:
    """The whole second (UTC) of a timestamp as we send it or as a profile read returns it
    (`created_date`): RFC 3339 with `Z` or an offset, fractional seconds cut off, or unix
    seconds. None for anything else (such an event matches no fingerprint)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Insider's timestamps are UTC
    return int(moment.timestamp() // 1)


def _read_keys(name: str, event: dict[str, object]) -> list[MatchKey]:
    """Every key an event of a profile read is counted under."""
    product_id = _text(event.get("product_id"))
    return [
        ("order", (name, _text(event.get("event_group_id")), product_id)),
        ("fingerprint", (name, product_id, unix_second(event.get("created_date")))),
    ]


class HeldEventCheck:
    def __init__(self, insider: InsiderClient) -> None:
        self._insider = insider

    async def held(
        self,
        identifiers: Identifiers,
        sought: Sequence[Sought],
        delivered_before: Sequence[Sought] = (),
        matching: Matching = "event_id",
    ) -> list[bool]:
        """For each sought event, whether the profile holds it. `delivered_before` are
        events of the same person known to be stored already (they use up count matches);
        `matching` is the account's (order events are counted either way). One profile
        read; raises what the read raised."""
        if not sought:
            return []
        moments = [_moment(s.timestamp) for s in (*sought, *delivered_before)]
        profile = await self._insider.read_profile(
            identifiers.strongest(),
            attributes=["uuid"],
            events={
                "start_date": int((min(moments) - READ_SLACK).timestamp()),
                "end_date": int((max(moments) + READ_SLACK).timestamp()),
                "wanted": [
                    {"event_name": name, "params": MATCH_PARAMS}
                    for name in sorted({s.name for s in sought})
                ],
            },
        )
        if profile is None:
            return [False] * len(sought)  # no such person yet: nothing of theirs arrived
        ids: set[tuple[str, str]] = set()
        counts: Counter[MatchKey] = Counter()
        for name, found in (profile.get("events") or {}).items():
            for event in found:
                if event.get("event_id") is not None:
                    ids.add((name, str(event["event_id"])))
                counts.update(_read_keys(name, event))
        for known in delivered_before:
            known_key = known.match_key(matching)
            if known_key is not None:
                counts[known_key] -= 1
        answer = []
        for item in sought:
            key = item.match_key(matching)
            if key is None:
                answer.append((item.name, str(item.event_id)) in ids)
            elif counts[key] > 0:
                counts[key] -= 1
                answer.append(True)
            else:
                answer.append(False)
        return answer
