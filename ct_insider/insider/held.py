"""Which of some events Insider already holds: the one check that settles a doubtful delivery.

Insider stores every event it receives and has no deduplication key, so a request that may
have been stored (a 5xx, an answer lost, a sender that died mid-request) cannot simply be
sent again. This check reads the profile once per person (paced to the profile quota) and
says, event by event, whether it is there:

- an event that carries its own id (`event_params.custom.event_id`: every storefront and
  realtime event) is recognised by that id, so two views of one product in one second stay
  two events;
- an order event (purchase, refund, cancellation) is recognised by name, `event_group_id`
  (the order number) and `product_id`, counting: the profile's matching events, less those
  known to have been delivered before, confirm that many of the ones sought.

Every path that sends events uses it: journey shards and the order backfill and delta.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ct_insider.insider.client import InsiderClient
from ct_insider.insider.models import Event, Identifiers

# Reads events this far around the sought ones' timestamps.
READ_SLACK = timedelta(days=1)
# Event params a check asks the profile read for.
MATCH_PARAMS = ["event_id", "event_group_id", "product_id"]

CountKey = tuple[str, str | None, str | None]  # event name, group id, product id


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


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


class HeldEventCheck:
    def __init__(self, insider: InsiderClient) -> None:
        self._insider = insider

    async def held(
        self,
        identifiers: Identifiers,
        sought: Sequence[Sought],
        delivered_before: Sequence[Sought] = (),
    ) -> list[bool]:
        """For each sought event, whether the profile holds it. `delivered_before` are
        events of the same person known to be stored already (they use up count matches).
        One profile read; raises what the read raised."""
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
        counts: Counter[CountKey] = Counter()
        for name, found in (profile.get("events") or {}).items():
            for event in found:
                if event.get("event_id") is not None:
                    ids.add((name, str(event["event_id"])))
                counts[
                    (name, _text(event.get("event_group_id")), _text(event.get("product_id")))
                ] += 1
        for known in delivered_before:
            if known.event_id is None:
                counts[known.count_key()] -= 1
        answer = []
        for item in sought:
            if item.event_id is not None:
                answer.append((item.name, item.event_id) in ids)
            elif counts[item.count_key()] > 0:
                counts[item.count_key()] -= 1
                answer.append(True)
            else:
                answer.append(False)
        return answer
