"""Historical events and live journeys: years-old orders must not start today's journeys.

Insider starts Architect "On Event" journeys (and the Cart Reminder app) on whatever event an
upsert carries, however old its timestamp, unless the request says `skip_hook: true`. Two
rules keep history out of live journeys (docs/operations.md, "Backfills and live journeys"):

1. The live window (`orders.live_window_hours` of the mapping rules, 72 h by default): an
   order whose newest event is older than that is historical on every path: the backfill
   (which sends everything with skip_hook anyway), the delta sync (e.g. resumed from an old
   watermark, or a years-old order changed today), a re-drive of a dead letter, and the journey
   shards (an `OrderImported` message of a migration reaching the bridge). Historical orders
   go out in requests of their own with skip_hook.
2. The history mode of a backfill (`ct-insider backfill orders --history attributes`):
   historical orders send their profile only (identifiers and the attributes the order
   carries, e.g. a guest's email), no event at all: for accounts where even skip_hook is not
   trusted, or where years of purchases should not count in Insider's event-based segments.
   An order whose profile carries nothing of its own is counted as skipped. Its events are
   not written to the delivery ledger: a later run in `events` mode still sends them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from ct_insider.insider.models import User
from ct_insider.sync.window import parse_timestamp

HistoryMode = Literal["events", "attributes"]
HISTORY_MODES: tuple[HistoryMode, ...] = ("events", "attributes")


def newest_event_at(user: User) -> datetime | None:
    stamps = [parse_timestamp(event.timestamp) for event in user.events or []]
    return max(stamps) if stamps else None


def is_historical(user: User, now: datetime, window: timedelta) -> bool:
    """Whether every event of the upsert is older than the live window."""
    newest = newest_event_at(user)
    return newest is not None and newest < now - window


def as_history(user: User, mode: HistoryMode) -> User | None:
    """What a historical order sends in `mode`: its events (with skip_hook), or its profile
    alone; None when that is nothing."""
    if mode == "events":
        return user
    if not user.attributes or not user.attributes.to_json_dict():
        return None
    return User(identifiers=user.identifiers, attributes=user.attributes)
