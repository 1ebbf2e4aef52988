"""How often the emulated account holds each event, by the key its sender gave it: the count
every exactly-once check compares against what was produced (tests, reliability/)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


def held_event_keys(events: Iterable[dict[str, Any]]) -> Counter[str]:
    """Purchases by order number and SKU, every other event by its id (the connector's
    custom `event_id` param)."""
    found: Counter[str] = Counter()
    for event in events:
        params = event.get("event_params") or {}
        if event["event_name"] == "purchase":
            found[f"{params.get('event_group_id')}/{params.get('product_id')}"] += 1
        else:
            found[str((params.get("custom") or {}).get("event_id"))] += 1
    return found
